"""The control loop inside the scheduler: look, decide (decisions.py), act through a Backend.

Runs on the scheduler's event loop and calls the Scheduler object directly (no RPC to itself).
Everything it awaits is either a cheap scheduler call or async backend I/O, so the loop never blocks.

A cycle runs every `interval`, or sooner (never closer than a quarter of it to the previous one) when
something it acts on happens (new work, a first result, a worker arriving while units wait: activity.py).
Each cycle: observe the backend, take a `snapshot` (pure; with the busiest moment since the previous
cycle, measured by the same scheduler plugin), `decide`, then scale up at once or hand a
scale-down to the executor (executor.py), which runs it as a background job so a slow retirement or
removal never delays a scale-up; the two never share a lock, nor any mutable state: the controller hands
the executor its look as values (`_look`), the executor reports events and counts through the
controller's sinks, and the controller only reads the executor's departures record
(backends/departures.py), the one table of units on their way out. Those are never capacity, and are
counted as requested until the backend moves them to LOWERED with its decrement's write (the backend
reads `requested` last, so record and count are of one moment when observe returns). A scale-up asks on
top of the units still in removal; the backend discounts those whose decrement already landed
(Backend.scale_up). Reconciliation (reconcile.py) removes orphan units and drops workers whose unit is
gone; those of units removed after retirement leave as expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from dask_adaptive.activity import Activity
from dask_adaptive.backends.base import Backend, BackendError, Observation, Phase
from dask_adaptive.backends.departures import COUNTED, Departures, Stage
from dask_adaptive.config import PreloadSettings
from dask_adaptive.decisions import (
    Decision,
    History,
    Hold,
    Limits,
    ScaleDown,
    ScaleUp,
    Snapshot,
    cold_target,
    decide,
)
from dask_adaptive.executor import ACCEPTING, Look, ScaleDownExecutor, workers_by_name
from dask_adaptive.logs import fmt
from dask_adaptive.metrics import Stats, WorkerClock
from dask_adaptive.reconcile import reconcile
from dask_adaptive.schedule import active_windows

logger = logging.getLogger("dask_adaptive")

# a pending unit that is cheaper to cancel sorts first
_CANCEL_ORDER = {Phase.PENDING: 0, Phase.STARTING: 1, Phase.RUNNING: 2, Phase.TERMINATING: 3}
_RECORDED = ("ScaleUp", "ScaleDown", "retired", "retire-aborted", "retire-timeout", "corrected")


class Controller:
    def __init__(
        self,
        scheduler: Any,  # distributed.Scheduler; Any because its attributes are used duck-typed
        backend: Backend,
        settings: PreloadSettings,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),  # min-workers-schedule's clock
    ) -> None:
        self.scheduler = scheduler
        self.settings = settings
        self.clock = clock
        self.wall = wall
        self.limits = Limits(
            settings.min_workers, settings.max_workers, settings.scale_down_delay, "--min-workers"
        )
        self.stats = Stats()
        self.worker_clock = WorkerClock()  # worker-seconds of our units, from the backend's looks
        self.history = History()
        self.known: set[str] = set()  # every unit name the backend reported
        self.nodes: dict[str, str | None] = {}  # the node of each unit of the last look
        self.executor = ScaleDownExecutor(
            scheduler, backend, settings, look=self._look, event=self._event, count=self._count
        )
        self._no_worker_since: dict[str, float] = {}
        self._unit_gone_since: dict[str, float] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._last_logged: tuple[str, int] | None = None
        self._seen_arrived: set[str] = set()
        self.metrics_handle: object | None = None  # set by the preload: prometheus registration
        self._wake = asyncio.Event()
        self._pending = False  # the last look saw units without a worker
        # what the scheduler saw between two looks (activity.py): the busiest moment, and reasons to look
        # now (it sets _wake); registered here so every step sees it
        self.activity = Activity(
            scheduler, lambda ws: str(ws.name) in self.known, self._wake, lambda: self._pending
        )
        scheduler.add_plugin(self.activity, name=Activity.name)
        # woken looks come no closer together than this (a flood of submits must not flood the API)
        self.min_gap = settings.interval / 4

    @property
    def backend(self) -> Backend:
        return self.executor.backend

    @property
    def departures(self) -> Departures:
        """The executor's record of units leaving; the controller only reads it."""
        return self.executor.departures

    def _look(self) -> Look:
        """What the executor needs of the latest look, copied: it never sees this object's state."""
        return Look(frozenset(self.known), MappingProxyType(dict(self.nodes)))

    # ----------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Check the backend (BackendUnavailable propagates) and start the loop."""
        await self.backend.start()
        self._loop_task = asyncio.create_task(self._run(), name="dask-adaptive-loop")
        self._event("started", settings=repr(self.settings))

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):  # already removed
            self.scheduler.remove_plugin(name=Activity.name)
        for task in (self._loop_task, *self._background):
            if task is not None:
                task.cancel()
        await self.executor.stop()
        for task in (self._loop_task, *self._background):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        await self.backend.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._wake.clear()  # a wake-up during the step below calls for another look
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                # like distributed's Adaptive: one bad cycle must not end autoscaling
                logger.exception("dask-adaptive: error in control loop; continuing")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.interval)
            await asyncio.sleep(max(0.0, started + self.min_gap - loop.time()))

    # ----------------------------------------------------------------------------- one cycle
    async def step(self) -> Decision | None:
        ended = self.departures.removals_ended
        try:
            obs = await self.backend.observe()
        except BackendError as e:
            self.stats.api_errors += 1
            logger.warning("dask-adaptive: %s", fmt(event="observe-failed", error=e))
            return None
        if self.departures.removals_ended != ended:
            # a removal returned while we looked: the units listed may include some whose records it
            # ended (a cancelled unit would look pending again); the next look is consistent
            logger.debug("dask-adaptive: %s", fmt(event="observation-stale", reason="removal returned"))
            return None
        # from here to the decision, no await: the departures record is of the moment `requested` was read
        now = self.clock()
        self.stats.add_worker_seconds(self.settings.worker_group, self.worker_clock.tick(now, obs.units))
        workers = workers_by_name(self.scheduler)
        self.known.update(u.name for u in obs.units)
        self.nodes.clear()
        self.nodes.update((u.name, u.node) for u in obs.units)
        snap = self.snapshot(now, obs, workers, busy=self.activity.take())
        self._pending = bool(snap.pending)
        new = set(snap.arrived) - self._seen_arrived
        if new:
            self._event("arrived", units=sorted(new))
        self._seen_arrived = set(snap.arrived)
        self._update_limits()
        decision, self.history = decide(snap, self.limits, self.history)
        self.stats.count_decision(type(decision).__name__, decision.cause)
        self._update_gauges(snap)
        self._log_decision(decision)
        if isinstance(decision, ScaleUp):
            await self._scale_up(decision)
        elif isinstance(decision, ScaleDown):
            self.executor.start_scale_down(decision)
        self.executor.start_retry()
        await self._reconcile(now, obs, workers)
        return decision

    def snapshot(
        self, now: float, obs: Observation, workers: Mapping[str, Any] | None = None, busy: int = 0
    ) -> Snapshot:
        """What the decisions see: reads the scheduler and the departures, changes nothing.

        `busy` is the activity since the previous look (Activity.take, which step() calls: taking it
        starts the next interval, so it is not done here)."""
        workers = workers_by_name(self.scheduler) if workers is None else workers
        leaving = self.departures.leaving()
        arrived, pending, starting = [], [], []
        for unit in sorted(obs.units, key=lambda u: _CANCEL_ORDER[u.phase]):
            if unit.phase is Phase.TERMINATING or unit.name in leaving:
                continue
            ws = workers.get(unit.name)
            if ws is None:
                (pending if unit.phase is Phase.PENDING else starting).append(unit.name)
            elif ws.status in ACCEPTING:
                arrived.append(unit.name)
            # else: a worker leaving on its own (SIGTERM, closing): neither capacity nor cancellable
        # adaptive_target counts every worker; those we did not start (another group, a manual
        # `dask worker`) already provide their share, so we supply only the rest
        foreign = sum(1 for name, ws in workers.items() if name not in self.known and ws.status in ACCEPTING)
        target = cold_target(
            int(self.scheduler.adaptive_target(target_duration=self.settings.target_duration)),
            len(self.scheduler.workers),  # adaptive_target's own test for "no worker to average over"
            self.settings.worker_threads,
        )
        return Snapshot(
            now=now,
            target=max(0, target - foreign),
            requested=obs.requested,
            arrived=tuple(arrived),
            pending=tuple(pending),
            starting=tuple(starting),
            # units leaving whose decrement has not landed yet (not LOWERED) are still in `requested`
            retiring=len(self.departures.names(*COUNTED)),
            in_progress=self.executor.busy or bool(leaving),
            busy=busy,
        )

    def _update_limits(self) -> None:
        """The minimum in force now: --min-workers, raised by any min-workers-schedule window active (the wall
        clock); a change is logged with its cause."""
        minimum, cause = self.settings.min_workers, "--min-workers"
        if self.settings.min_workers_schedule.windows:
            for window in active_windows(self.settings.min_workers_schedule, self.wall()):
                if window.minimum > minimum:
                    minimum, cause = window.minimum, f"min-workers-schedule {window.text}"
        if (minimum, cause) == (self.limits.minimum, self.limits.minimum_from):
            return
        logger.info(
            "dask-adaptive: %s", fmt(event="minimum", minimum=minimum, was=self.limits.minimum, by=cause)
        )
        self._event("minimum", minimum=minimum, was=self.limits.minimum, by=cause)
        self.limits = Limits(minimum, self.settings.max_workers, self.settings.scale_down_delay, cause)

    def _update_gauges(self, snap: Snapshot) -> None:
        self.stats.desired = max(self.limits.minimum, min(self.limits.maximum, snap.target))
        self.stats.requested = snap.requested
        self.stats.pending = len(snap.pending) + len(snap.starting)
        self.stats.observed = len(snap.arrived)
        self.stats.retiring = snap.retiring

    def _log_decision(self, decision: Decision) -> None:
        kind = type(decision).__name__
        wanted = getattr(decision, "wanted", -1)
        line = fmt(decision=kind, wanted=wanted if wanted >= 0 else "-", reason=decision.reason)
        # a Hold repeats every interval: log it once per change, the actions always
        if isinstance(decision, Hold) and self._last_logged == (decision.reason.split(":")[0], wanted):
            logger.debug("dask-adaptive: %s", line)
            return
        self._last_logged = (decision.reason.split(":")[0], wanted)
        logger.info("dask-adaptive: %s", line)
        if not isinstance(decision, Hold):
            self._event(kind, wanted=wanted, reason=decision.reason)

    def _count(self, **increments: int) -> None:
        """The executor's counts (Stats.add): the controller is the one writer of its stats."""
        self.stats.add(**increments)

    def _event(self, action: str, **fields: Any) -> None:
        """Scheduler event (Client.get_events("adaptive")) and, for actions, a backend record."""
        self.scheduler.log_event("adaptive", {"action": action, **fields})
        if action in _RECORDED:
            self._spawn(self.backend.record(action, fmt(**fields)))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ----------------------------------------------------------------------------- scale up
    async def _scale_up(self, decision: ScaleUp) -> None:
        """Never waits for a scale-down: no lock is shared with a removal (see the module docstring)."""
        # units leaving are in the backend's count until their removal returns: ask on top of them; the
        # backend discounts those whose decrement lands first. n is computed and handed over without an
        # await in between, so it matches the removals the backend sees as unfinished at the call.
        n = decision.wanted + len(self.departures.leaving())
        try:
            await self.backend.scale_up(n)
        except BackendError as e:
            self.stats.api_errors += 1
            logger.warning("dask-adaptive: %s", fmt(event="scale-up-failed", n=n, error=e))
            return
        self.stats.scale_ups += 1

    # ----------------------------------------------------------------------------- reconcile
    async def _reconcile(self, now: float, obs: Observation, workers: dict[str, Any]) -> None:
        findings = reconcile(
            now,
            obs.units,
            workers,
            self.known,
            self._no_worker_since,
            self._unit_gone_since,
            orphan_grace=self.settings.orphan_grace,
            gone_grace=max(5.0, 3 * self.settings.interval),
        )
        self._no_worker_since = findings.no_worker_since
        self._unit_gone_since = findings.unit_gone_since
        leaving = self.departures.leaving()
        orphans = [n for n in findings.orphans if n not in leaving]
        if orphans and not self.executor.busy:
            logger.warning("dask-adaptive: %s", fmt(event="orphan-units", units=orphans))
            self.stats.corrections += len(orphans)
            self._event("corrected", orphans=orphans)
            self.executor.start_orphan_removal(orphans)
        for name in findings.unitless:
            ws = workers[name]
            expected = name in self.departures.names(Stage.GONE)
            if not expected:
                self.stats.corrections += 1
                self._event("corrected", unitless=name)
            logger.info(
                "dask-adaptive: %s", fmt(event="drop-unitless-worker", worker=name, expected=expected)
            )
            await self.scheduler.remove_worker(
                ws.address, stimulus_id=f"dask-adaptive-unitless-{time.time()}", expected=expected, close=True
            )
        # forget names that are neither units nor workers any more
        alive = {u.name for u in obs.units} | set(workers)
        self.known.intersection_update(alive)
        self.executor.forget_gone(alive)
