"""Smoke run of decision_cost.py's plugin cost at tiny sizes, so it cannot rot (no timing assertions).

Each engine run asserts inside the script that every task finished and was forgotten, so exit 0 means
the scheduler drove every task's whole life with our plugin registered and without it.
"""

from __future__ import annotations

from tests.benchmarks.scripts import run

TINY = (
    "--workers",
    "5",
    "--tasks",
    "100",
    "--budget",
    "0.05",
    "--look-pods",
    "",
    "--look-real",
    "0",
)  # look cost: test_smoke


def cells(out: str, first: str) -> list[str]:
    row = next(line for line in out.splitlines() if line.startswith(f"| {first} "))
    return [c.strip() for c in row.strip("|").split("|")]


def test_plugin_cost_tiny():
    out = run("decision_cost.py", *TINY, "--plugin-tasks", "100", "--plugin-rounds", "2", "--e2e-pairs", "2")
    assert "ours/no-op" in out and "one task, all of the above" in out
    assert "baseline: the scheduler with distributed's own plugins" in out
    for contender in ("+ a no-op plugin", "+ dask-adaptive", "+ dask-adaptive + a no-op plugin"):
        assert float(cells(out, contender)[3]) > 0, contender  # best/baseline
    assert "2 rounds of 100 no-op tasks" in out and "2 pairs of runs of 50 no-op tasks" in out
    assert cells(out, "distributed's own plugins")[3] == "1"


def test_plugin_cost_can_be_left_out():
    out = run("decision_cost.py", *TINY, "--plugin-tasks", "0")
    assert "tick (busy)" in out and "plugin cost" not in out
