"""node_cost.py puts each task run again down to what removed the worker of its earlier run; the
attribution is pure, so it is table-tested here."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "node_cost.py"


@pytest.fixture(scope="module")
def node_cost():
    spec = importlib.util.spec_from_file_location("node_cost_under_test", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize(
    ("starts", "expected"),
    [
        ([(1, "a", 1.0), (2, "b", 1.0)], {}),  # each task ran once
        ([(1, "a", 1.0), (1, "c", 5.0)], {"CA eviction": 1}),  # first on a, which a drain evicted
        ([(1, "c", 5.0), (1, "a", 1.0)], {"CA eviction": 1}),  # order of the files does not matter
        ([(1, "a", 5.0), (1, "c", 1.0)], {"other": 1}),  # the earlier run was on c: not a, not b
        ([(1, "a", 5.0), (1, "x", 1.0)], {"other": 1}),  # x: neither (a crash, a lost node)
        ([(1, "b", 1.0), (1, "c", 5.0)], {"preload": 1}),  # b: retired by the preload
        # three runs of one task: the two earlier ones each count; task 2 ran once
        ([(1, "a", 1.0), (1, "b", 2.0), (1, "c", 3.0), (2, "a", 0.5)], {"CA eviction": 1, "preload": 1}),
    ],
)
def test_each_task_run_again_is_put_down_to_what_removed_its_earlier_worker(node_cost, starts, expected):
    assert node_cost.rerun_causes(starts, evicted={"a"}, retired={"b"}) == expected


def test_task_starts_reads_the_files_timed_task_leaves(node_cost, tmp_path: Path):
    for name, when in (("3.dask-worker-7f9c-x2.0a1b", 100.0), ("12.local-1.ffee", 200.0)):
        (tmp_path / name).touch()
        os.utime(tmp_path / name, (when, when))
    expected = [(3, "dask-worker-7f9c-x2", 100.0), (12, "local-1", 200.0)]
    assert sorted(node_cost.task_starts(tmp_path)) == expected
