"""Smoke runs of the benchmark scripts at tiny sizes, so they cannot rot.

No timing assertions: each script must exit 0, print its table with the ratio columns, and (where the
script measures it) report no task executed twice / nothing lost. The full runs live in RESULTS.md.
"""

from __future__ import annotations

import sys

import pytest

from tests.benchmarks.scripts import ROOT, run


def test_adaptive_efficiency_tiny(tmp_path):
    png = tmp_path / "eff.png"
    out = run(
        "adaptive_efficiency.py",
        *("--workloads", "bursty", "--max-workers", "2", "--seconds", "0.2", "--bursty-leaves", "4"),
        *("--gaps", "0.5", "--windows", "0", "--repeats", "1", "--skip-defaults", "--max-tail", "2"),
        *("--png", str(png)),
    )
    for column in ("makespan/fixed", "warm/fixed", "ws work/busy", "ws +tail/busy"):
        assert column in out
    assert "dask-adaptive / distributed-adaptive like-for-like" in out
    ours = [row for row in out.splitlines() if row.startswith("| dask-adaptive")]
    header = next(row for row in out.splitlines() if row.startswith("| contender"))
    twice = [c.strip() for c in header.strip("|").split("|")].index("twice")
    assert ours and all(row.strip("|").split("|")[twice].strip() == "0" for row in ours), ours
    assert "tasks executed more than once, all runs:" in out
    assert png.stat().st_size > 0


def test_decision_cost_tiny():
    out = run(
        "decision_cost.py",
        *("--workers", "5,10", "--tasks", "200", "--budget", "0.05"),
        *("--look-pods", "10", "--look-idle", "2", "--look-real", "0"),
    )
    assert "ours/baseline" in out and "time/worker factor" in out
    assert "tick (busy)" in out and "scale-down decision (idle)" in out
    assert "largest block per look ms" in out  # the look cost's table rides along


def test_look_cost_list_and_watch_see_the_same_pods():
    out = run("look_cost.py", "--pods", "30", "--idle-seconds", "3")
    header = next(row for row in out.splitlines() if row.startswith("| server"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = [[c.strip() for c in r.strip("|").split("|")] for r in out.splitlines() if r.startswith("| local")]
    assert {r[columns.index("mode")] for r in rows} == {"list", "watch"}, rows
    assert all(r[columns.index("units")] == "30" and int(r[columns.index("looks")]) >= 2 for r in rows), rows
    for column in ("largest block per look ms", "wire kB/idle min", "block / list", "wire bytes / list"):
        assert column in columns
    assert "local fake, 30 pods: largest block per look" in out


def test_tls_cost_tiny():
    out = run(
        "tls_cost.py",
        *("--max-workers", "2", "--seconds", "0.2", "--burst-leaves", "6", "--tiny", "40", "--repeats", "1"),
        *("--transfer-mib", "8", "--transfer-blocks", "2", "--transfer-rounds", "3", "--seed", "7"),
    )

    def rows(first: str) -> tuple[list[str], list[list[str]]]:
        """(header, body rows) of the table whose header line starts with `first`."""
        block = out[out.index(first) :].split("\n\n", 1)[0].splitlines()
        cells = [[c.strip() for c in line.strip("|").split("|")] for line in block]
        return cells[0], cells[2:]

    columns, runs = rows("| rep ")
    assert {r[columns.index("mode")] for r in runs} == {"plain", "tls"}, runs
    assert all(r[columns.index("twice")] == "0" for r in runs), runs  # nothing run twice
    # three transfer pairs on the two pools of 2 workers, data moved between them (half of 8 MiB or more)
    columns, pairs = rows("| pair ")
    assert len(pairs) == 3 and {p[columns.index("first")] for p in pairs} <= {"plain", "tls"}, pairs
    sent = [float(p[columns.index(c)]) for p in pairs for c in ("plain MiB sent", "tls MiB sent")]
    assert all(x >= 3 for x in sent), sent
    assert "(seed 7 for orders and resamples)" in out and "95% interval" in out
    summary = out.split("| measure ", 1)[1]
    assert "not claimed: 1 pair(s)" in summary and "transfer (rechunk) | 3 " in summary
    assert "burst makespan ratio tls/plain" in out


@pytest.mark.kube
def test_scale_down_safety_one_cycle():
    from testbed.kube.control_plane import find_binaries

    if find_binaries()[0] is None:
        pytest.skip("no Kubernetes binaries (tests/kube/build.sh)")
    out = run("scale_down_safety.py", "--cycles", "1", "--max-workers", "2", "--contenders", "dask-adaptive")
    row = next(line for line in out.splitlines() if line.startswith("| dask-adaptive"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "1/1" and cells[5] == "0" and cells[6] == "0", row  # lost/recomputed, wrong pods


def test_results_sections_are_replaced_not_appended(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import _common

    monkeypatch.setattr(_common, "RESULTS", tmp_path / "RESULTS.md")
    _common.write_section("x", "X", "python x.py", "first")
    _common.write_section("y", "Y", "python y.py", "other")
    _common.write_section("x", "X", "python x.py", "second")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "second" in text and "first" not in text and "other" in text
    assert text.count("<!-- BEGIN x -->") == 1 and "cores" in text and "load average" in text


@pytest.mark.kube
def test_node_cost_one_burst_for_the_preload_and_the_operators_way(tmp_path):
    """One small burst through Dask -> pods -> provisioned nodes and back, for the preload and for the
    operator's way (no preload, a driver scaling the Deployment): every task done once, nothing lost or
    begun twice, a node launched for the burst and removed again, and the table with its interval and
    lower-bound columns and the real-control-plane label. (--step's narrower phase runs in the full run.)"""
    from testbed.kube.control_plane import find_binaries

    if find_binaries()[0] is None:
        pytest.skip("no Kubernetes binaries (tests/kube/build.sh)")
    png = tmp_path / "nodes.png"
    out = run(
        "node_cost.py", "--tiny", "--contenders", "packed,operator", "--seed", "1", "--png", str(png),
        timeout=240,
    )  # fmt: skip
    assert "bursts of 3 tasks  [REAL control plane]" in out
    assert "order shuffled per repeat with seed 1" in out and "physical lower bound:" in out
    header = next(line for line in out.splitlines() if line.startswith("| contender"))
    assert "node-s / operator [95% CI]" in header and "node-s / lower bound [95% CI]" in header
    for contender in ("packed", "operator"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {contender} "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[7] == "+1/-1", row  # 3 workers fit one node of 4, removed once empty
        assert cells[11:15] == ["0", "0", "0", "0"], row  # lost, recomputed, restarted, failed
        assert f"{contender}: tasks run again, all runs: 0" in out
    assert "tasks lost or recomputed, all runs: 0; runs with failures: 0" in out
    assert "no claim: packed / operator node-seconds" in out  # one repeat: no interval, no claim
    assert png.stat().st_size > 0
