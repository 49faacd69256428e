"""How much of its SIGTERM budget a worker keeps back for moving its data; running tasks get the rest
(a task cut off runs again from the start elsewhere). Pure, so table-tested; test_sigterm.py shows it
end to end."""

from __future__ import annotations

import pytest

from dask_adaptive.worker import MOVE_RESERVE_FLOOR, move_reserve

MB = 1_000_000


@pytest.mark.parametrize(
    ("budget", "held", "bandwidth", "reserve"),
    [
        (115.0, 0, 100 * MB, MOVE_RESERVE_FLOOR),  # the program's 120s grace, little data: tasks get 105s
        (115.0, 50 * MB, 100 * MB, MOVE_RESERVE_FLOOR),  # four copies (2s) fit in the floor
        (115.0, 500 * MB, 100 * MB, 20.0),  # four copies of 5s each
        (115.0, 2_000 * MB, 100 * MB, 80.0),
        (115.0, 5_000 * MB, 100 * MB, 115.0),  # more than the budget can move: no time for tasks
        (25.0, 0, 100 * MB, 6.25),  # the standalone default: a quarter of a budget under 40s
        (5.75, 0, 100 * MB, 1.4375),  # the benchmark's compressed budget
        (115.0, 50 * MB, 0.0, 115.0),  # no bandwidth known: keep it all for the data
        (0.0, 0, 100 * MB, 0.0),
    ],
)
def test_the_reserve_covers_the_data_and_leaves_the_rest_to_running_tasks(budget, held, bandwidth, reserve):
    assert move_reserve(budget, held, bandwidth) == pytest.approx(reserve)


def test_the_reserve_grows_with_the_data_and_never_exceeds_the_budget():
    reserves = [move_reserve(60.0, held * MB, 100 * MB) for held in range(0, 3_000, 50)]
    assert reserves == sorted(reserves)
    assert reserves[0] == MOVE_RESERVE_FLOOR and reserves[-1] == 60.0
