"""Paired-ratio bootstrap intervals, so a ratio is claimed only where its interval excludes parity.

Each repeat runs both contenders back to back (in a random order), so machine drift between repeats
cancels in the pair's ratio. The statistic is the geometric mean of the pair ratios (a ratio of 1.1 and
one of 1/1.1 average to parity); its 95% interval is the percentile bootstrap over pairs resampled with
replacement. With few pairs the interval is wide, which is the point: it says how little 5 pairs show.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    point: float  # geometric mean of the pair ratios
    low: float
    high: float
    pairs: int

    def excludes_parity(self) -> bool:
        return self.low > 1 or self.high < 1

    def __str__(self) -> str:
        return f"{self.point:.3f} [{self.low:.3f}, {self.high:.3f}]"


def percentile_bootstrap(
    values: Sequence[float],
    statistic: Callable[[Sequence[float]], float],
    rng: random.Random,
    resamples: int = 10_000,
    level: float = 0.95,
) -> tuple[float, float]:
    """The `level` percentile-bootstrap interval of `statistic` over `values` (resampled with replacement).

    The one bootstrap every benchmark uses (tls_cost's pair ratios, node_cost's per-repeat ratios)."""
    if not values:
        raise ValueError("percentile_bootstrap: no values")
    if not 0 < level < 1:
        raise ValueError(f"percentile_bootstrap: level {level!r} must be in (0, 1)")
    n = len(values)
    stats = sorted(statistic(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1 - level) / 2
    return stats[int(tail * (resamples - 1))], stats[math.ceil((1 - tail) * (resamples - 1))]


def pair_ratio_interval(
    ratios: Sequence[float], rng: random.Random, resamples: int = 10_000, level: float = 0.95
) -> Interval:
    """Geometric mean of `ratios` (one per pair) with its percentile-bootstrap interval."""
    logs = [math.log(r) for r in ratios if r > 0]
    if not logs:
        raise ValueError(f"pair ratios must hold a positive value; got {list(ratios)}")
    low, high = percentile_bootstrap(logs, statistics.fmean, rng, resamples, level)
    return Interval(math.exp(statistics.fmean(logs)), math.exp(low), math.exp(high), len(logs))


MIN_PAIRS = 3  # below this the bootstrap has next to nothing to resample: no claim at all


def verdict(iv: Interval, slower: str = "slower", faster: str = "faster") -> str:
    """A claim only where the interval excludes 1 (and there are enough pairs to have an interval)."""
    if iv.pairs < MIN_PAIRS:
        return f"not claimed: {iv.pairs} pair(s), fewer than {MIN_PAIRS}"
    if iv.low > 1:
        return (
            f"{slower} by {100 * (iv.point - 1):.0f}% ({100 * (iv.low - 1):.0f}-{100 * (iv.high - 1):.0f}%)"
        )
    if iv.high < 1:
        return (
            f"{faster} by {100 * (1 - iv.point):.0f}% ({100 * (1 - iv.high):.0f}-{100 * (1 - iv.low):.0f}%)"
        )
    return "no difference shown (interval holds 1)"
