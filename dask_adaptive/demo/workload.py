"""The demo's work: simple maths that sleeps a lot, ending in one final answer.

`leaves` squares, then a pairwise tree of additions: the answer is sum(i*i), easy to check, and only
the final future is held by the client, so when the work is done exactly one worker holds data.
"""

from __future__ import annotations

import time
from typing import Any

from dask.delayed import Delayed, delayed


def square(i: int, seconds: float) -> int:
    time.sleep(seconds)
    return i * i


def add(a: int, b: int, seconds: float) -> int:
    time.sleep(seconds)
    return a + b


def build(leaves: int, seconds: float) -> tuple[Delayed, int, int]:
    """The graph, its expected answer and its number of tasks."""
    level: list[Any] = [
        delayed(square, pure=True)(i, seconds, dask_key_name=f"square-{i}") for i in range(leaves)
    ]
    tasks = len(level)
    depth = 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level) - 1, 2):
            nxt.append(delayed(add)(level[j], level[j + 1], seconds / 4, dask_key_name=f"add-{depth}-{j}"))
        if len(level) % 2:
            nxt.append(level[-1])
        tasks += len(level) // 2
        level = nxt
    return level[0], sum(i * i for i in range(leaves)), tasks
