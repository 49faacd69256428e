"""The outside baselines of node_cost.py and its simulated scaleDownUnneededTime curve: the pure parts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from ca_curve import Curve, Setting, simulate
from node_cost_baselines import operator_step


@pytest.mark.parametrize(
    ("current", "desired", "expected"),
    [
        (0, 7, 7),  # up at once
        (3, 11, 9),  # clamped to the maximum
        (9, 0, 7),  # down by a quarter of 9 (2) per step
        (3, 0, 2),  # a quarter of 3 is 0: at least 1
        (2, 0, 1),
        (1, 0, 0),
        (5, 4, 4),
    ],
)
def test_the_operator_clamps_and_steps_down_by_a_quarter_at_most(current, desired, expected):
    assert operator_step(current, desired, minimum=0, maximum=9) == expected


def test_operator_minimum_holds():
    assert operator_step(1, 0, minimum=1, maximum=9) == 1


def _curve():
    # 8 workers asked 0.3 s after the submit, back to 0 at 11.7 s; first worker 6.4 s after the submit
    pts = tuple((i * 0.1, 8 if 0.3 <= i * 0.1 < 11.7 else 0) for i in range(140))
    return Curve(pts, 11.7, 0.3, 6.4)


def test_a_longer_unneeded_time_costs_node_seconds_and_buys_warm_starts():
    base = dict(boot=3.0, reaction=0.33, after_add=10.0, pod_start=1.7, workers_per_node=4)
    short_cost, short_lat = simulate(_curve(), 20.0, 4, Setting(unneeded=2.0, **base))
    long_cost, long_lat = simulate(_curve(), 20.0, 4, Setting(unneeded=40.0, **base))
    assert long_cost > short_cost
    # with a 20 s gap and 12 s of after-add + unneeded the nodes are gone: every burst starts cold
    assert all(x == pytest.approx(short_lat[0], abs=0.2) for x in short_lat)
    assert short_lat[0] == pytest.approx(0.3 + 0.33 + 3.0 + 1.7, abs=0.2)
    # kept through the gap: later bursts start on warm nodes after the pod start alone
    assert all(x == pytest.approx(0.3 + 1.7, abs=0.1) for x in long_lat[1:])
