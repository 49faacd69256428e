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
    out = run("decision_cost.py", "--workers", "5,10", "--tasks", "200", "--budget", "0.05")
    assert "ours/baseline" in out and "time/worker factor" in out
    assert "tick (busy)" in out and "scale-down decision (idle)" in out


def test_tls_cost_tiny():
    out = run(
        "tls_cost.py",
        *("--max-workers", "2", "--seconds", "0.2", "--burst-leaves", "6", "--tiny", "40", "--repeats", "1"),
    )
    rows = [row for row in out.splitlines() if row.startswith("| 1 ")]
    assert {row.split("|")[2].strip() for row in rows} == {"plain", "tls"}, rows
    assert all(row.strip("|").split("|")[-1].strip() == "0" for row in rows), rows  # nothing run twice
    assert "ratio of medians" in out and "burst makespan ratio tls/plain" in out


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
def test_node_cost_one_burst_and_its_narrower_phase(tmp_path):
    """One small burst and a narrower phase (2 lanes, --step) through Dask -> pods -> provisioned nodes
    and back: every task done once, nothing lost or begun twice, nodes launched for the burst and removed
    again (the bill back at its baseline)."""
    from testbed.kube.control_plane import find_binaries

    if find_binaries()[0] is None:
        pytest.skip("no Kubernetes binaries (tests/kube/build.sh)")
    png = tmp_path / "nodes.png"
    out = run("node_cost.py", "--tiny", "--step", "--contenders", "packed", "--png", str(png), timeout=180)
    assert "each with 2 lanes x 2 tasks" in out
    row = next(line for line in out.splitlines() if line.startswith("| packed"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[7] == "+2/-2", row  # 6 workers need two nodes of 4, both removed once empty
    assert cells[11:15] == ["0", "0", "0", "0"], row  # lost, recomputed, restarted, failed
    assert "tasks lost or recomputed, all runs: 0; runs with failures: 0" in out
    assert "packed: tasks run again, all runs: 0\n" in out
    assert png.stat().st_size > 0
