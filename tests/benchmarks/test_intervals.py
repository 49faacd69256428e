"""benchmarks/_intervals.py: the paired-ratio bootstrap behind every "tls is ... slower" claim."""

from __future__ import annotations

import random
import sys

import pytest

from tests.benchmarks.scripts import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from _intervals import Interval, pair_ratio_interval, verdict


def test_a_consistent_slowdown_excludes_parity_and_is_claimed():
    iv = pair_ratio_interval([1.07, 1.11, 1.09, 1.13, 1.08], random.Random(3))
    assert 1.07 <= iv.low < iv.point < iv.high <= 1.13
    assert iv.point == pytest.approx((1.07 * 1.11 * 1.09 * 1.13 * 1.08) ** (1 / 5))
    assert iv.excludes_parity() and verdict(iv).startswith("slower by 10% (")


def test_ratios_on_both_sides_of_one_claim_nothing():
    iv = pair_ratio_interval([0.96, 1.06, 1.01, 0.93, 1.04], random.Random(3))
    assert iv.low < 1 < iv.high and not iv.excludes_parity()
    assert verdict(iv) == "no difference shown (interval holds 1)"


def test_a_speed_up_is_worded_as_one():
    iv = pair_ratio_interval([0.8, 0.85, 0.82], random.Random(1))
    assert iv.high < 1 and verdict(iv, faster="cheaper").startswith("cheaper by 18% (")


def test_the_seed_makes_the_interval_repeatable_and_one_pair_gives_a_point():
    ratios = [1.2, 0.9, 1.05, 1.3, 0.97, 1.01]
    assert pair_ratio_interval(ratios, random.Random(11)) == pair_ratio_interval(ratios, random.Random(11))
    one = pair_ratio_interval([1.25], random.Random(0))
    assert one == Interval(1.25, 1.25, 1.25, 1) and verdict(one) == "not claimed: 1 pair(s), fewer than 3"


def test_no_positive_ratio_is_an_error_naming_the_values():
    with pytest.raises(ValueError, match=r"\[0, -1\]"):
        pair_ratio_interval([0, -1], random.Random(0))


def test_tls_cost_puts_each_mode_first_in_half_the_pairs():
    from tls_cost import MODES, balanced_orders

    for n in (1, 6, 15):
        orders = balanced_orders(
            n, random.Random(647879075)
        )  # a seed whose plain draws gave 13 of 15 one way
        firsts = [o[0] for o in orders]
        assert len(orders) == n and all(sorted(o) == sorted(MODES) for o in orders)
        assert abs(firsts.count("plain") - firsts.count("tls")) == n % 2, firsts
    assert balanced_orders(6, random.Random(1)) == balanced_orders(6, random.Random(1))
