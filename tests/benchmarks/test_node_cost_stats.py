"""The statistics node_cost.py prints with every table: paired ratios, a percentile bootstrap of their
mean, and a claim only where the 95% interval excludes 1; and the workload's physical lower bound."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from node_cost_stats import bootstrap_ci, claim, excludes_one, lower_bound, paired_ratios


def test_ratios_are_paired_by_repeat_and_skip_repeats_one_side_lacks():
    a = {0: 141.3, 1: 145.1, 2: 137.4, 4: 99.0}
    b = {0: 148.7, 1: 150.6, 2: 143.8, 3: 120.0}
    assert paired_ratios(a, b) == [141.3 / 148.7, 145.1 / 150.6, 137.4 / 143.8]


def test_the_bootstrap_interval_brackets_the_mean_and_is_seeded():
    ratios = [0.9503, 0.9635, 0.9555, 0.9712, 0.9418]  # a tight, all-below-1 sample
    lo, hi = bootstrap_ci(ratios, seed=7)
    assert lo <= statistics.fmean(ratios) <= hi
    assert min(ratios) <= lo < hi <= max(ratios)  # a mean's interval lies within the sample's range
    assert bootstrap_ci(ratios, seed=7) == (lo, hi)  # the seed makes it reproducible
    assert excludes_one((lo, hi))
    wide = [0.74, 1.12, 0.93, 1.21, 0.88]  # the step result's kind of spread
    assert not excludes_one(bootstrap_ci(wide, seed=7))
    assert bootstrap_ci([1.03]) == (1.03, 1.03)
    with pytest.raises(ValueError, match="no values"):
        bootstrap_ci([])


def test_a_claim_is_stated_only_where_the_interval_excludes_one():
    assert claim("packed / unpacked", [0.9503, 0.9635, 0.9555, 0.9712, 0.9418]).startswith("CLAIM: ")
    assert "4% fewer node-seconds" in claim("packed / unpacked", [0.9503, 0.9635, 0.9555, 0.9712, 0.9418])
    assert claim("x", [0.74, 1.12, 0.93, 1.21, 0.88]).startswith("no claim (95% interval includes 1)")
    assert claim("x", [0.8]).startswith("no claim: x: fewer than 2")


def test_the_lower_bound_is_packed_busy_work_plus_one_start_per_cold_node():
    # 3 bursts of 8/6/8 tasks of 1.5..9 s (mean 5.25 s) on 4 slots per node, 2 cold nodes each, 7.3 s start
    busy = 22 * 5.25
    assert lower_bound(busy, 4, [2, 2, 2], 7.3) == pytest.approx(115.5 / 4 + 6 * 7.3)
    with pytest.raises(ValueError, match="slots_per_node 0"):
        lower_bound(busy, 0, [2], 7.3)
