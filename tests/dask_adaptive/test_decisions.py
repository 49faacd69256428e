"""Table-driven tests of the pure scaling policy."""

from __future__ import annotations

import pytest

from dask_adaptive.decisions import (
    History,
    Hold,
    Limits,
    ScaleDown,
    ScaleUp,
    Snapshot,
    clamp,
    cold_target,
    decide,
    pack_victims,
    pick_victims,
)

LIMITS = Limits(minimum=1, maximum=8, scale_down_delay=30.0)


def run(steps: list[tuple[float, int, int]], limits: Limits = LIMITS, **snap: object):
    """Feed (time, target, requested) steps; return the last decision."""
    history = History()
    decision = None
    for now, target, requested in steps:
        decision, history = decide(
            Snapshot(now=now, target=target, requested=requested, **snap), limits, history
        )
    return decision


@pytest.mark.parametrize(
    ("target", "expected"),
    [(-3, 1), (0, 1), (1, 1), (5, 5), (8, 8), (9, 8), (10_000, 8)],
)
def test_clamp(target, expected):
    assert clamp(target, LIMITS) == expected


@pytest.mark.parametrize(
    ("name", "steps", "snap", "expected"),
    [
        # scale-up is immediate, to the clamped target
        ("up from zero", [(0, 5, 0)], {}, ScaleUp),
        ("up above max clamps", [(0, 50, 2)], {}, ScaleUp),
        ("at target", [(0, 3, 3)], {}, Hold),
        # minimum holds even with no work
        ("minimum floor", [(0, 0, 1), (100, 0, 1)], {}, Hold),
        ("below minimum scales up", [(0, 0, 0)], {}, ScaleUp),
        # stabilization window: below for less than the window -> hold
        ("below briefly", [(0, 1, 4), (29, 1, 4)], {}, Hold),
        # below for the whole window -> scale down
        ("below whole window", [(0, 1, 4), (15, 1, 4), (30, 1, 4)], {}, ScaleDown),
        # a dip interrupted by a high target within the window -> hold
        ("spike within window", [(0, 1, 4), (10, 4, 4), (31, 1, 4)], {}, Hold),
        # a freshly started controller does not shrink before it has watched a full window
        ("no history", [(1000, 1, 4)], {}, Hold),
        # pending units count as wanted: target 4 with 4 requested (1 arrived) is no scale-up
        ("pending is not re-requested", [(0, 4, 4)], {"arrived": ("a",), "pending": ("b", "c", "d")}, Hold),
        # units still retiring are not wanted: 4 requested, 2 retiring, target 3 -> scale up to 3
        ("retiring not counted", [(0, 3, 4)], {"retiring": 2}, ScaleUp),
        # a second scale-down waits for the first to finish
        ("down in progress", [(0, 1, 6), (40, 1, 6)], {"retiring": 1}, Hold),
    ],
)
def test_decision_kind(name, steps, snap, expected):
    assert isinstance(run(steps, **snap), expected), name


def test_scale_up_goes_straight_to_clamped_target():
    decision = run([(0, 50, 2)])
    assert decision == ScaleUp(8, decision.reason)


def test_scale_down_goes_to_highest_target_in_window():
    decision = run([(0, 6, 8), (10, 2, 8), (20, 5, 8), (30, 1, 8), (35, 1, 8)])
    # window [5, 35]: sample at 0 (6) is the value that held at the window start
    assert isinstance(decision, ScaleDown)
    assert decision.wanted == 6
    decision = run([(0, 6, 8), (10, 2, 8), (20, 5, 8), (30, 1, 8), (45, 1, 8)])
    assert decision.wanted == 5  # sample at 10 (2) opens the window [15, 45]; 5 at 20 is the highest


def test_scale_down_never_below_minimum():
    decision = run([(0, 0, 5), (31, 0, 5)])
    assert isinstance(decision, ScaleDown) and decision.wanted == 1


def test_scale_down_cancels_pending_before_retiring():
    snap = {"arrived": ("a", "b", "c"), "pending": ("p1", "p2")}
    decision = run([(0, 1, 5), (31, 1, 5)], **snap)
    assert decision == ScaleDown(1, ("p1", "p2"), 2, decision.reason)


def test_scale_down_only_cancels_when_that_is_enough():
    snap = {"arrived": ("a", "b"), "pending": ("p1", "p2", "p3")}
    decision = run([(0, 3, 5), (31, 3, 5)], **snap)
    assert decision == ScaleDown(3, ("p1", "p2"), 0, decision.reason)


@pytest.mark.parametrize(
    ("target", "snap", "expected"),
    [
        # 6 wanted, 3 needed: cancel the unstarted one, keep both starting (not retire 2 running instead)
        (
            3,
            {"arrived": ("a", "b", "c"), "pending": ("p1",), "starting": ("s1", "s2")},
            ScaleDown(5, ("p1",), 0, ""),
        ),
        # only starting units in excess: nothing to do until they arrive
        (4, {"arrived": ("a", "b", "c", "d"), "starting": ("s1", "s2")}, Hold("")),
        # more excess than starting units: the rest are running workers retired
        (1, {"arrived": ("a", "b", "c", "d"), "starting": ("s1", "s2")}, ScaleDown(3, (), 3, "")),
        # once arrived they are running workers like any other
        (4, {"arrived": ("a", "b", "c", "d", "s1", "s2")}, ScaleDown(4, (), 2, "")),
    ],
)
def test_a_starting_unit_is_never_cancelled(target, snap, expected):
    """Issue 13 §4: the estimate dips while a burst's first results come in; cancelling a worker that is
    already starting throws its paid start-up away (and, at window 0, left the cold phase short)."""
    requested = len(snap.get("arrived", ())) + len(snap.get("pending", ())) + len(snap.get("starting", ()))
    decision = run([(0, target, requested), (31, target, requested)], **snap)
    assert type(decision) is type(expected)
    if isinstance(expected, ScaleDown):
        assert (decision.wanted, decision.cancel, decision.retire) == (
            expected.wanted,
            expected.cancel,
            expected.retire,
        )
    assert f"starting={len(snap.get('starting', ()))}" in decision.reason


def test_pending_units_are_never_shrunk_below_what_is_wanted():
    # 10 requested, 3 arrived, target still 10: the 2017 code shrank to 2 * arrived = 6 here
    snap = {"arrived": ("a", "b", "c"), "pending": tuple(f"p{i}" for i in range(7))}
    for t in range(0, 120, 10):
        decision = run([(t, 10, 10)], **snap)
        assert isinstance(decision, Hold)


def test_zero_delay_scales_down_at_once():
    limits = Limits(minimum=0, maximum=4, scale_down_delay=0.0)
    decision = run([(5, 0, 3)], limits)
    assert isinstance(decision, ScaleDown) and decision.wanted == 0 and decision.retire == 3


def test_history_keeps_only_the_window_and_its_opening_value():
    history = History()
    for t in range(0, 100, 10):
        history = history.add(float(t), t, window=25.0)
    assert [t for t, _ in history.samples] == [60.0, 70.0, 80.0, 90.0]
    assert history.covers(90.0, 25.0) and history.highest() == 90


def test_reasons_are_logged_values():
    decision = run([(0, 5, 2)], arrived=("a", "b"))
    assert "target=5" in decision.reason and "wanted=2" in decision.reason


@pytest.mark.parametrize("seed", range(5))
def test_invariants_over_a_random_bursty_workload(seed):
    """Simulated control loop: units arrive 3 steps after being asked for; the target jumps around."""
    import random

    rng = random.Random(seed)
    limits = Limits(minimum=1, maximum=6, scale_down_delay=10.0)
    history, requested, born, targets = History(), 0, {}, []
    counter = 0
    for step in range(600):
        now = float(step)
        target = rng.choice([0, 0, 1, 2, 9]) if step % 40 < 20 else 0  # bursts, then idle
        targets.append((now, clamp(target, limits)))
        arrived = tuple(n for n, t in born.items() if now - t >= 3)
        pending = tuple(n for n, t in born.items() if now - t < 3)
        snap = Snapshot(now, target, requested, arrived, pending)
        decision, history = decide(snap, limits, history)
        if isinstance(decision, ScaleUp):
            assert decision.wanted <= limits.maximum and decision.wanted > requested
            for _ in range(decision.wanted - requested):
                counter += 1
                born[f"u{counter}"] = now
            requested = decision.wanted
        elif isinstance(decision, ScaleDown):
            window = [d for t, d in targets if t >= now - limits.scale_down_delay]
            assert max(window) < requested, "shrinks only after the whole window was below"
            assert decision.wanted >= limits.minimum and decision.wanted == max(window)
            assert set(decision.cancel) <= set(pending), "only not-arrived units are cancelled"
            assert decision.retire == requested - decision.wanted - len(decision.cancel)
            for name in decision.cancel:
                del born[name]
            for name in arrived[: decision.retire]:
                del born[name]
            requested = decision.wanted
        assert limits.minimum <= requested <= limits.maximum or step == 0
        assert len(born) == requested


@pytest.mark.parametrize(
    ("target", "workers", "threads", "expected"),
    [
        # from zero, adaptive_target counts cores: divide by the threads of the workers to come, round up
        (16, 0, 4, 4),
        (17, 0, 4, 5),
        (1, 0, 4, 1),  # one queued task still needs one worker
        (3, 0, 4, 1),
        (16, 0, 1, 16),  # one thread per worker: cores are workers (distributed's own answer)
        (0, 0, 4, 0),  # nothing to do: nothing asked
        # with workers, adaptive_target already divided by their average threads: kept as it is
        (16, 1, 4, 16),
        (3, 2, 4, 3),
        (0, 5, 4, 0),
    ],
)
def test_cold_target_turns_cores_into_workers_only_from_zero(target, workers, threads, expected):
    assert cold_target(target, workers, threads) == expected


TRICKLE = Limits(minimum=0, maximum=4, scale_down_delay=5.0)


def looks(busy: list[int], target: int = 0, requested: int = 1, interval: float = 0.5):
    """One look per interval, each with `target` and the busiest moment since the previous look."""
    history = History()
    decisions = []
    for i, b in enumerate(busy):
        snap = Snapshot(
            now=i * interval, target=target, requested=requested, arrived=("w",) * requested, busy=b
        )
        decision, history = decide(snap, TRICKLE, history)
        decisions.append(decision)
    return decisions


@pytest.mark.parametrize(
    ("name", "busy", "requested", "expected"),
    [
        # every look lands in a pause (target 0) but the worker worked between looks: keep it
        ("trickle: busy between every look", [1] * 30, 1, Hold),
        # the same rhythm at half the interval's rate: every other look saw no task at all
        ("trickle: busy every other look", [1, 0] * 15, 1, Hold),
        # one task in the last 5s is enough to hold
        ("one busy look within the window", [0] * 20 + [1] + [0] * 9, 1, Hold),
        # truly idle: unchanged, scale down once the window is covered
        ("idle", [0] * 30, 1, ScaleDown),
        # busy long ago, idle for the whole window since
        ("busy before the window only", [1] * 10 + [0] * 11, 1, ScaleDown),
        # three workers, at most two ever busy at once: the third goes, the two stay
        ("two of three busy", [2, 1] * 15, 3, ScaleDown),
        # busy never scales up (it cannot exceed the workers there are): no ScaleUp from it
        ("busy does not scale up", [3] * 30, 1, Hold),
    ],
)
def test_activity_between_looks_holds_the_window(name, busy, requested, expected):
    decisions = looks(busy, requested=requested)
    assert isinstance(decisions[-1], expected), (name, decisions[-1])
    assert not any(isinstance(d, ScaleUp) for d in decisions), name


def test_a_busy_window_scales_down_only_to_the_busiest_moment():
    decision = looks([2, 1] * 15, requested=3)[-1]
    assert isinstance(decision, ScaleDown) and decision.wanted == 2 and decision.retire == 1
    assert "busy=1" in decision.reason


def test_without_activity_a_pause_sample_retires_the_trickle_worker():
    """The issue's failure, reproduced on the policy: what the window saw before busy existed."""
    assert isinstance(looks([0] * 11)[-1], ScaleDown)
    assert isinstance(looks([1] * 11)[-1], Hold)


# ---------------------------------------------------------------- packing (issue 13 §1)


@pytest.mark.parametrize(
    ("candidates", "nodes", "k", "expected"),
    [
        # local backend: one implicit node, the scheduler's order kept
        (["a", "b", "c"], {"a": None, "b": None, "c": None}, 2, ["a", "b"]),
        # node B holds 1 of our workers, A holds 3: B's worker first, then A's in the scheduler's order
        (["a1", "a2", "b1"], {"a1": "A", "a2": "A", "a3": "A", "b1": "B"}, 2, ["b1", "a1"]),
        # equal nodes: finish one node before touching the next (a1, b1, a2 would free none)
        (["a1", "b1", "a2", "b2"], {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}, 2, ["a1", "a2"]),
        # a busy worker (not a candidate) still occupies its node: the emptier node goes first
        (["a1", "b1", "b2"], {"a1": "A", "a9": "A", "a8": "A", "b1": "B", "b2": "B"}, 2, ["b1", "b2"]),
        # fewer candidates than k
        (["a1"], {"a1": "A"}, 3, ["a1"]),
        ([], {"a1": "A"}, 2, []),
    ],
)
def test_pack_victims_empties_whole_nodes(candidates, nodes, k, expected):
    assert pack_victims(candidates, nodes, k) == expected


@pytest.mark.parametrize(
    ("candidates", "nodes", "k", "draining", "expected"),
    [
        # the narrow phase of a stream: busy a1 and b1 on two full nodes, k=2 - draining b1 with its
        # idle b2 frees B; idle workers alone (a2, b2) would free none
        (["a2", "b2"], {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}, 2, {"a1": 3.0, "b1": 1.0}, ["b2", "b1"]),
        # equal nodes, equal work: the scheduler's order picks the node (a2 comes first)
        (["a2", "b2"], {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}, 2, {"a1": 1.0, "b1": 1.0}, ["a2", "a1"]),
        # a node that does not fit in k is never drained: only idle workers go
        (["a2", "b2"], {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}, 1, {"a1": 1.0, "b1": 1.0}, ["a2"]),
        # a busy worker that may not be drained (not in `draining`, e.g. a long-running task) blocks its node
        (["a2", "b2"], {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}, 2, {"b1": 1.0}, ["b2", "b1"]),
        (["a2", "b2"], {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}, 2, {}, ["a2", "b2"]),
        # a pending unit (no worker yet: neither idle nor busy) blocks its node too
        (["a1", "b1"], {"a1": "A", "a9": "A", "b1": "B", "b2": "B"}, 2, {"b2": 1.0}, ["b1", "b2"]),
        (["a1", "b1"], {"a1": "A", "a9": "A", "b1": "B", "b9": "B"}, 2, {}, ["a1", "b1"]),
        # whole nodes first (B, then C, by size), the rest idle from the emptiest remaining node
        (
            ["a1", "a2", "b1", "c1"],
            {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "c1": "C", "c2": "C"},
            4,
            {"c2": 2.0, "a3": 0.5},
            ["b1", "c1", "c2", "a1"],
        ),
        # local units (no node): nothing is drained, the scheduler's order is kept
        (["x", "y"], {"x": None, "y": None, "z": None}, 3, {"z": 1.0}, ["x", "y"]),
    ],
)
def test_pack_victims_drains_busy_workers_only_to_free_a_node(candidates, nodes, k, draining, expected):
    assert pack_victims(candidates, nodes, k, draining) == expected


def test_without_node_packing_busy_workers_are_never_chosen():
    nodes = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    picked = pick_victims(["a2", "b2"], nodes, 2, node_packing=False, draining={"b1": 1.0})
    assert picked == ["a2", "b2"]


@pytest.mark.parametrize(
    ("node_packing", "k", "expected"),
    [
        # a1, a2 share node A with a busy a9; b1 is alone on B: packing frees B first
        (True, 1, ["b1"]),
        (True, 3, ["b1", "a1", "a2"]),
        # off: the scheduler's workers_to_close order, exactly as before packing existed
        (False, 1, ["a1"]),
        (False, 2, ["a1", "a2"]),
        (False, 9, ["a1", "a2", "b1"]),
        (False, 0, []),
    ],
)
def test_pick_victims_node_packing_switch(node_packing, k, expected):
    nodes = {"a1": "A", "a2": "A", "a9": "A", "b1": "B"}
    assert pick_victims(["a1", "a2", "b1"], nodes, k, node_packing=node_packing) == expected


CAUSE_CASES = [
    ("work", [(0, 5, 0)], {}, ScaleUp),
    ("minimum", [(0, 0, 0)], {}, ScaleUp),
    ("at-target", [(0, 3, 3)], {}, Hold),
    ("in-progress", [(0, 1, 4)], {"in_progress": True}, Hold),
    ("within-delay", [(0, 1, 4), (29, 1, 4)], {}, Hold),
    ("recently-needed", [(0, 1, 4), (10, 4, 4), (31, 1, 4)], {}, Hold),
    ("only-starting", [(0, 1, 4), (30, 1, 4)], {"starting": ("s1", "s2", "s3")}, Hold),
    ("idle", [(0, 1, 4), (15, 1, 4), (30, 1, 4)], {}, ScaleDown),
]


@pytest.mark.parametrize(("cause", "steps", "snap", "kind"), CAUSE_CASES)
def test_every_branch_names_its_cause_from_the_fixed_set(cause, steps, snap, kind):
    """The cause is the `reason` label of dask_adaptive_decisions_total: one word per branch of `decide`."""
    decision = run(steps, **snap)
    assert type(decision) is kind and decision.cause == cause


def test_the_causes_table_is_exactly_the_branches():
    from dask_adaptive.decisions import CAUSES

    assert set(CAUSES) == {case[0] for case in CAUSE_CASES}
