"""How many workers to have: pure decisions, no I/O, so every rule is a table-driven test.

Rules (the seed: "scale up as quickly as it can, scale down with a specified delay"):

* desired = the scheduler's `adaptive_target()` clamped to [minimum, maximum]; from zero workers it
  counts cores, so the controller divides it by the threads per worker first (`cold_target`); the
  minimum may change from one look to the next (a minimum-schedule window, schedule.py);
* "wanted" = what the backend was asked for minus units already on their way out. A unit that was
  requested but has not arrived counts as wanted, never as capacity, so a scale-up never asks again
  for pods that are merely Pending, and nothing shrinks below what is still wanted;
* above wanted -> scale up now, to desired;
* below wanted -> scale down only when *every* desired value seen over the last `scale_down_delay`
  seconds was below wanted, and then only to the highest of them (HPA-style stabilization);
* the window keeps, for each look, the higher of desired and `busy` (our workers processing a task
  at once at the busiest moment since the previous look): a sample taken in a pause between tasks
  must not make a busy worker look idle (issue 13 §5); busy never scales up, only holds;
* a scale-down cancels units not started yet first; a unit already starting is kept (its start is
  paid, it arrives soon: cancelling it as a burst's estimate dips wastes it, the cold phase of issue 13
  §4) and is retired once arrived if still in excess; only the rest are retired running workers;
* among the workers safe to close, those on the nodes with the fewest of our workers go first, a node at
  a time, so a scale-down empties whole nodes where it can (the bill counts nodes; `pack_victims`); a
  busy worker is chosen only to empty a whole node, and is drained (no new task, its running ones
  finish) before it is retired; with node packing off, the scheduler's order alone (`pick_victims`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Sample = tuple[float, int]  # (monotonic time, workers needed then: desired or busy, the higher)


@dataclass(frozen=True)
class Limits:
    minimum: int  # in force now: the controller raises it while a minimum-schedule window is active
    maximum: int
    scale_down_delay: float
    minimum_from: str = ""  # where the minimum comes from, for the log of a scale-up it causes


@dataclass(frozen=True)
class Snapshot:
    """One look at the world, taken by the controller."""

    now: float
    target: int  # Scheduler.adaptive_target(), unclamped
    requested: int  # what the backend is working towards (Deployment spec.replicas)
    arrived: tuple[str, ...] = ()  # units whose worker is connected and accepting work
    pending: tuple[str, ...] = ()  # requested units not started yet (cancelling is free), cheapest first
    starting: tuple[str, ...] = ()  # requested units whose worker is starting: never cancelled (below)
    retiring: int = 0  # units of an unfinished scale-down, still counted in `requested`
    in_progress: bool = False  # a scale-down or removal is still running: never start another
    busy: int = 0  # our workers processing at once at the busiest moment since the previous snapshot


# The cause of a decision as one word of a fixed set: the label `reason` of dask_adaptive_decisions_total
# (metrics.py), where the free-text `reason` (numbers included) would make a new series every look.
CAUSES = {
    "work": "ScaleUp: the queued work asks for more workers than are wanted",
    "minimum": "ScaleUp: the minimum (--min-workers or a min-workers-schedule window) asks for more",
    "at-target": "Hold: wanted equals desired",
    "in-progress": "Hold: a scale-down is still running",
    "within-delay": "Hold: below wanted for less than scale-down-delay",
    "recently-needed": "Hold: the busiest look of the window still needs every wanted worker",
    "only-starting": "Hold: the excess is units already starting (kept, retired once arrived)",
    "idle": "ScaleDown: below wanted for the whole scale-down-delay window",
}


@dataclass(frozen=True)
class ScaleUp:
    wanted: int  # the new wanted size; the mechanism adds the units still retiring to it
    reason: str
    cause: str = field(default="", compare=False)  # one of CAUSES


@dataclass(frozen=True)
class ScaleDown:
    wanted: int
    cancel: tuple[str, ...]  # not-yet-arrived units to remove without retirement
    retire: int  # how many running workers to retire (victims are chosen by the scheduler)
    reason: str
    cause: str = field(default="", compare=False)  # one of CAUSES


@dataclass(frozen=True)
class Hold:
    reason: str
    cause: str = field(default="", compare=False)  # one of CAUSES


Decision = ScaleUp | ScaleDown | Hold


@dataclass(frozen=True)
class History:
    """Desired values seen recently; the controller threads it from one decision to the next."""

    samples: tuple[Sample, ...] = field(default_factory=tuple)

    def add(self, now: float, desired: int, window: float) -> History:
        """Append and forget samples that no longer matter.

        The newest sample at or before the window start is kept: it is the value that held when
        the window opened, so "below for the whole window" can be told from "only just below".
        """
        samples = (*self.samples, (now, desired))
        start = now - window
        first = 0
        for i, (t, _) in enumerate(samples):
            if t <= start:
                first = i
        return History(samples[first:])

    def covers(self, now: float, window: float) -> bool:
        return bool(self.samples) and self.samples[0][0] <= now - window

    def highest(self) -> int:
        return max(d for _, d in self.samples)


def cold_target(target: int, workers: int, threads: int) -> int:
    """Workers wanted for `Scheduler.adaptive_target()`'s value `target` with `workers` connected.

    adaptive_target divides its core estimate by the average threads per worker only when workers
    exist; from zero it returns cores, which would ask `threads` times too many workers (and nodes).
    With workers its answer is already in workers and is kept as it is.
    """
    if workers or target <= 0:
        return target
    return -(-target // threads)


def clamp(target: int, limits: Limits) -> int:
    return max(limits.minimum, min(limits.maximum, target))


def decide(snap: Snapshot, limits: Limits, history: History) -> tuple[Decision, History]:
    """The decision for this snapshot and the history to pass to the next call."""
    desired = clamp(snap.target, limits)
    # what this look needed: the work seen now, or the busiest moment since the last look if higher
    needed = max(desired, min(snap.busy, limits.maximum))
    history = history.add(snap.now, needed, limits.scale_down_delay)
    wanted = max(0, snap.requested - snap.retiring)
    state = (
        f"target={snap.target} desired={desired} busy={snap.busy} wanted={wanted} "
        f"arrived={len(snap.arrived)} pending={len(snap.pending)} starting={len(snap.starting)} "
        f"retiring={snap.retiring}"
    )
    if desired > wanted:
        # name the minimum when it, not the work, asks for more (e.g. a scheduled window opened)
        cause = f" to minimum {limits.minimum} ({limits.minimum_from})" if snap.target < desired else ""
        code = "minimum" if cause else "work"
        return ScaleUp(desired, f"scale up now{cause}: {state}", code), history
    if desired == wanted:
        return Hold(f"at target: {state}", "at-target"), history
    if snap.retiring or snap.in_progress:
        return Hold(f"scale-down already in progress: {state}", "in-progress"), history
    if not history.covers(snap.now, limits.scale_down_delay):
        return Hold(
            f"target below wanted for less than the {limits.scale_down_delay:g}s window: {state}",
            "within-delay",
        ), history
    floor = history.highest()
    if floor >= wanted:
        reason = f"needed {floor} within the last {limits.scale_down_delay:g}s: {state}"
        return Hold(reason, "recently-needed"), history
    excess = wanted - floor
    cancel = snap.pending[:excess]
    # a starting unit's start is paid and it arrives soon: it stays (retired once arrived, if still in
    # excess), and no running worker is retired in its place
    keep = min(len(snap.starting), excess - len(cancel))
    retire = excess - len(cancel) - keep
    what = (
        f"target below wanted for the whole {limits.scale_down_delay:g}s window, highest {floor}: cancel "
        f"{len(cancel)} not-started, retire {retire}, keep {keep} starting"
    )
    if not cancel and not retire:
        return Hold(f"{what}: {state}", "only-starting"), history
    return ScaleDown(floor + keep, cancel, retire, f"{what}: {state}", "idle"), history


def pack_victims(
    candidates: Sequence[str],
    node_of: Mapping[str, str | None],
    k: int,
    draining: Mapping[str, float] | None = None,
) -> list[str]:
    """Up to `k` workers to retire so that whole nodes empty. `candidates` are the idle ones in the
    scheduler's safe-to-close order (idle, least data first); `node_of` maps each of our units that stays
    to its node (None: unknown or local, one implicit node - the scheduler's order is then kept); `draining`
    maps busy workers that may be drained to the seconds of work the scheduler expects on them.

    1. Whole nodes first, fewest of our units first (then the least work to drain, then the scheduler's
       order): a node is taken when all its units fit in what is left of `k` and each is idle or
       drainable. Only here is a busy worker chosen: it takes no new task, finishes what it runs and is
       retired then - worth it only when that frees a node, which otherwise bills for as long as the
       work's narrower phase lasts (its tasks would keep landing there).
    2. The rest from the idle candidates, nodes with the fewest units first, a node's together."""
    draining = draining or {}
    rank = {name: i for i, name in enumerate(candidates)}
    first_seen: dict[str | None, int] = {}
    for name in candidates:
        first_seen.setdefault(node_of.get(name), rank[name])
    on_node: dict[str, list[str]] = {}
    for name, node in node_of.items():
        if node is not None:
            on_node.setdefault(node, []).append(name)

    def node_key(node: str) -> tuple[int, float, int]:
        work = max((draining.get(n, 0.0) for n in on_node[node]), default=0.0)
        return (len(on_node[node]), work, first_seen.get(node, len(candidates)))

    chosen: list[str] = []
    for node in sorted(on_node, key=node_key):
        units = on_node[node]
        if len(units) > k - len(chosen) or not all(u in rank or u in draining for u in units):
            continue
        chosen += sorted(units, key=lambda u: (u not in rank, rank.get(u, 0), u))

    def key(name: str) -> tuple[int, int, int]:
        node = node_of.get(name)
        return (len(on_node[node]) if node is not None else 0, first_seen[node], rank[name])

    taken = set(chosen)
    rest = sorted((n for n in candidates if n not in taken), key=key)
    return (chosen + rest)[: max(0, k)]


def pick_victims(
    candidates: Sequence[str],
    node_of: Mapping[str, str | None],
    k: int,
    *,
    node_packing: bool,
    draining: Mapping[str, float] | None = None,
) -> list[str]:
    """The `k` workers to retire: packed by node (busy ones in `draining` only to free a whole node), or
    (node packing off: the behaviour before packing, kept as a switch so its cost can be measured against
    it) the first `k` idle ones in the scheduler's order."""
    if node_packing:
        return pack_victims(candidates, node_of, k, draining)
    return list(candidates[: max(0, k)])
