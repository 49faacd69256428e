"""The data-safe scale-down: choose -> retire -> check safe -> remove, one job at a time.

Every unit it touches gets a record in `departures` (backends/departures.py), the one record of units
leaving, which this executor owns and lends to the backend; each moves through its stages:
1. cancel not-yet-arrived units (no data there): READY -> REMOVING -> forgotten;
2. `choose_victims`: the scheduler's own ranking (`Scheduler.workers_to_close`: idle, least data first),
   only among our units, packed by node; a busy unit only to free a whole node (drained in step 4);
3. `retire`: `retire_workers(names=..., close_workers=False, remove=False)` (RETIRING): data moves, the
   workers take no new work and stay alive, so nothing restarts and rejoins in the meantime;
4. keep only those the scheduler reports retired and that hold nothing unique (`partition_safe`; a
   drained unit's running tasks end first, then a second retirement moves the keys they or a finishing
   task left behind), READY; the others go back to work.
   Steps 3-4 are bounded by `retire-timeout`: a retirement that cannot finish is given up and its
   workers go back to work, so it cannot hold this and every later scale-down forever;
5. `remove` exactly those (REMOVING; LOWERED, moved by the backend when its decrement is written), then
   GONE: their exit is expected. A failed removal leaves them READY; `start_retry` hands them over again.

It shares no mutable state with the controller: the controller hands it each look as values (`Look`,
read when victims are chosen), and it reports events and counts back through the controller's sinks.

One job slot, shared by the scale-down, the retry and the removal of orphan units: a slow removal (a
Kubernetes one may wait a minute for the platform) never runs twice at once, and never delays a scale-up
(the controller's scale_up shares no lock with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from distributed.core import Status

from dask_adaptive.backends.base import Backend, BackendError, RemovalReport
from dask_adaptive.backends.departures import IN_REMOVAL, Departures, Reason, Stage
from dask_adaptive.config import PreloadSettings
from dask_adaptive.decisions import ScaleDown, pick_victims
from dask_adaptive.internals import stop_retirement
from dask_adaptive.logs import fmt

logger = logging.getLogger("dask_adaptive")

ACCEPTING = (Status.running, Status.paused)


def workers_by_name(scheduler: Any) -> dict[str, Any]:
    return {str(ws.name): ws for ws in scheduler.workers.values()}


@dataclass(frozen=True)
class Look:
    """The controller's latest look at the backend, as values: the units that are ours (every name the
    backend reported) and the node of each, for choosing victims."""

    units: frozenset[str] = frozenset()
    nodes: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))


class ScaleDownExecutor:
    def __init__(
        self,
        scheduler: Any,  # distributed.Scheduler, used duck-typed
        backend: Backend,
        settings: PreloadSettings,
        *,
        look: Callable[[], Look],  # the controller's latest look, read when victims are chosen
        event: Callable[..., None],  # the controller's event sink: event(action, **fields)
        count: Callable[..., None],  # the controller's counter sink: count(retirements=1, ...)
    ) -> None:
        self.scheduler = scheduler
        self.backend = backend
        self.settings = settings
        self.look = look
        self.event = event
        self.count = count
        self.departures = Departures()
        backend.departures = self.departures  # lent: the backend moves its removals' units through it
        self._job: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------------------- the job slot
    @property
    def busy(self) -> bool:
        return self._job is not None and not self._job.done()

    async def settle(self) -> None:
        """Wait for the running job, if any."""
        if self._job is not None:
            await self._job

    async def stop(self) -> None:
        if self._job is not None:
            self._job.cancel()
            with contextlib.suppress(BaseException):
                await self._job

    def _start(self, job: Coroutine[Any, Any, None], name: str) -> None:
        self._job = asyncio.create_task(job, name=name)

    def start_scale_down(self, decision: ScaleDown) -> bool:
        if self.busy:
            return False
        self.departures.begin(decision.cancel, Stage.READY, Reason.CANCEL)  # out of `wanted` from now on
        self._start(self.scale_down(decision), "dask-adaptive-down")
        return True

    def start_retry(self) -> bool:
        """Hand retired units whose removal failed to the backend again."""
        waiting = sorted(self.departures.names(Stage.READY, reason=Reason.RETIRE))
        if not waiting or self.busy:
            return False
        self._start(self._logged(self.remove(waiting), "removing retired workers"), "dask-adaptive-retry")
        return True

    def start_orphan_removal(self, names: list[str]) -> bool:
        """Remove units whose worker never came or left; out of `wanted` meanwhile, so a replacement
        can be asked for at once."""
        if self.busy:
            return False
        self.departures.begin(names, Stage.READY, Reason.ORPHAN)
        self._start(self._logged(self.remove(names), "removing orphan units"), "dask-adaptive-orphans")
        return True

    @staticmethod
    async def _logged(job: Coroutine[Any, Any, Any], what: str) -> None:
        try:
            await job
        except Exception:
            # a background task: log here, or the error would surface only at garbage collection
            logger.exception("dask-adaptive: %s failed; retrying next cycle", what)

    # ----------------------------------------------------------------------------- the sequence
    async def scale_down(self, decision: ScaleDown) -> None:
        try:
            done = 0
            if decision.cancel:
                done += await self.cancel(list(decision.cancel))
            if decision.retire:
                done += await self.retire_and_remove(decision.retire)
            if done:
                self.count(scale_downs=1)
        except Exception:
            logger.exception("dask-adaptive: scale-down failed; the next cycle starts over")
        finally:
            # normally done by cancel already; a unit that arrived meanwhile may have become a victim
            # (a RETIRE record), which stays
            self.departures.forget(
                n
                for n in decision.cancel
                if (d := self.departures.get(n)) is not None and d.reason is Reason.CANCEL
            )

    async def cancel(self, names: list[str]) -> int:
        """Remove the units of `names` that still have no worker; returns how many went."""
        workers = workers_by_name(self.scheduler)
        arrived = [n for n in names if n in workers]  # joined since the decision: retire next time
        cancel = [n for n in names if n not in workers]
        if arrived:
            self.departures.forget(arrived)  # capacity again
            logger.info("dask-adaptive: %s", fmt(event="cancel-skipped-arrived", units=arrived))
        if not cancel:
            return 0
        report = await self.remove(cancel)
        if report is None:
            return 0
        self.count(cancelled=len(report.removed))
        self.event("cancelled", units=list(report.removed))
        return len(report.removed)

    def choose_victims(self, k: int) -> list[str]:
        """The scheduler's own ranking (idle, least data first; plugin vetoes and long-running tasks
        respected), restricted to accepting workers of our units that are not already leaving, then
        packed by node so a scale-down frees whole nodes where it can (decisions.pack_victims) unless node
        packing is off. A busy worker may be chosen only to free a whole node, and only if the work the
        scheduler expects on it fits in half the retire-timeout (it is drained, see `_retire`)."""
        workers = workers_by_name(self.scheduler)
        look = self.look()
        # n = all workers turns workers_to_close into a full ranking instead of a memory-ratio cut
        ranking = self.scheduler.workers_to_close(n=len(self.scheduler.workers), attribute="name")
        leaving = self.departures.leaving()
        ours = look.units - leaving
        candidates: list[str] = []
        draining: dict[str, float] = {}
        for name in map(str, ranking):
            ws = workers.get(name)
            if name not in ours or ws is None or ws.status not in ACCEPTING:
                continue
            if not ws.processing:
                candidates.append(name)
            elif ws.occupancy <= self.settings.retire_timeout / 2:
                draining[name] = ws.occupancy
        staying = {n: node for n, node in look.nodes.items() if n not in leaving}
        return pick_victims(
            candidates, staying, k, node_packing=self.settings.node_packing, draining=draining
        )

    async def retire_and_remove(self, k: int) -> int:
        """choose -> retire -> check safe -> remove, for up to `k` workers; returns how many went (the
        retirements `_finish` counted: every victim has a RETIRE record)."""
        victims = self.choose_victims(k)
        if not victims:
            logger.info("dask-adaptive: %s", fmt(event="no-idle-victims", wanted_to_retire=k))
            return 0
        workers = workers_by_name(self.scheduler)
        draining = [n for n in victims if (ws := workers.get(n)) is not None and ws.processing]
        if draining:  # busy ones chosen to free their node: they finish their tasks first
            node_of = self.look().nodes
            nodes = sorted({str(node_of.get(n)) for n in draining})
            self.event("draining", workers=draining, nodes=nodes)
            logger.info("dask-adaptive: %s", fmt(event="draining", workers=draining, nodes=nodes))
        safe = await self.retire(victims)
        report = await self.remove(safe) if safe else None
        return len(report.removed) if report is not None else 0

    async def retire(self, names: list[str]) -> list[str]:
        """Retire `names` through the scheduler, bounded by retire-timeout; the ones safe to remove are
        returned (READY), the others are back at work and forgotten."""
        self.departures.begin(names, Stage.RETIRING, Reason.RETIRE)
        safe: list[str] = []
        try:
            safe = await asyncio.wait_for(self._retire(names), self.settings.retire_timeout)
        except TimeoutError:
            self._give_up(names)
        finally:
            self.departures.forget(set(names) - set(safe))
        self.departures.transition(safe, Stage.READY)
        return safe

    async def _retire(self, names: list[str]) -> list[str]:
        stimulus = f"dask-adaptive-retire-{time.time()}"
        result = await self.scheduler.retire_workers(
            names=names, close_workers=False, remove=False, stimulus_id=stimulus
        )
        retired = sorted(str(info["name"]) for info in result.values())
        aborted = sorted(set(names) - set(retired))
        if aborted:
            self.count(failed_retirements=len(aborted))
            self.event("retire-aborted", workers=aborted)
            logger.warning("dask-adaptive: %s", fmt(event="retire-aborted", workers=aborted))
        safe, unsafe = self.partition_safe(retired)
        if unsafe:
            # a drained victim takes no new task but finishes what it runs; a task that was finishing
            # during retirement can leave a fresh unique key behind: one more retirement moves it; if
            # that does not help, the worker goes back to work (all of it bounded by retire-timeout)
            await self._drained(unsafe)
            again = await self.scheduler.retire_workers(
                names=unsafe, close_workers=False, remove=False, stimulus_id=stimulus + "-again"
            )
            safe2, still = self.partition_safe(sorted(str(i["name"]) for i in again.values()))
            safe += safe2
            for name in set(unsafe) - set(safe2):
                self._unretire(name, stimulus)
            if still or set(unsafe) - set(safe2):
                self.count(failed_retirements=len(set(unsafe) - set(safe2)))
        if safe:
            self.event("retired", workers=safe)
        return safe

    async def _drained(self, names: list[str]) -> None:
        """Until none of `names` is processing a task (retired workers take no new one)."""
        pause = max(0.05, self.settings.interval / 4)
        while True:
            workers = workers_by_name(self.scheduler)
            if not any((ws := workers.get(n)) is not None and ws.processing for n in names):
                return
            await asyncio.sleep(pause)

    def partition_safe(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """Safe to remove: idle, and every key it holds has a copy on a worker that stays (accepting
        work and not itself on its way out), so removing several retired workers at once cannot
        take the last copies with them."""
        names = list(names)
        workers = workers_by_name(self.scheduler)
        leaving = set(names) | self.departures.leaving()
        staying = {ws for n, ws in workers.items() if n not in leaving and ws.status in ACCEPTING}
        safe, unsafe = [], []
        for name in names:
            ws = workers.get(name)
            if ws is None:
                safe.append(name)
                continue
            stranded = any(not (ts.who_has or set()) & staying for ts in ws.has_what)
            (unsafe if ws.processing or stranded else safe).append(name)
        return safe, unsafe

    def _give_up(self, names: list[str]) -> None:
        """A retirement outlived `retire-timeout` (its retire_workers call is cancelled by now): put
        its workers back to work; the next scale-down picks victims afresh. Nothing was removed."""
        stimulus = f"dask-adaptive-retire-timeout-{time.time()}"
        for name in names:
            self._unretire(name, stimulus)
        self.count(retire_timeouts=len(names))
        self.event("retire-timeout", workers=names, timeout=self.settings.retire_timeout)
        logger.warning(
            "dask-adaptive: %s",
            fmt(event="retire-timeout", workers=names, timeout=f"{self.settings.retire_timeout:g}s"),
        )

    def _unretire(self, name: str, stimulus: str) -> None:
        ws = workers_by_name(self.scheduler).get(name)
        if ws is not None and stop_retirement(self.scheduler, ws, stimulus):
            logger.warning("dask-adaptive: %s", fmt(event="unretired", worker=name))

    async def remove(self, names: list[str]) -> RemovalReport | None:
        """backend.remove(names); None if it failed. Their records end here, with no await between the
        call's return and the change: retired units become GONE (or READY again after a failure, to be
        retried), cancelled and orphan units are forgotten either way."""
        busy = [n for n in names if n in self.departures.names(*IN_REMOVAL)]
        if busy:  # the job slot is single, so this is a guard, not a path
            logger.warning("dask-adaptive: %s", fmt(event="remove-already-in-flight", units=busy))
            names = [n for n in names if n not in busy]
            if not names:
                return None
        self.departures.begin(names, Stage.READY, Reason.REMOVE)  # no-op for names that have a record
        self.departures.transition(names, Stage.REMOVING)
        report: RemovalReport | None = None
        try:
            report = await self.backend.remove(names)
        except BackendError as e:
            self.count(api_errors=1)
            logger.warning("dask-adaptive: %s", fmt(event="remove-failed", units=names, error=e))
            return None
        finally:
            self._finish(names, report)
        if report.wrong or report.corrected:
            self.count(corrections=len(report.corrected) or len(report.wrong))
            self.event("corrected", wrong=list(report.wrong), corrected=list(report.corrected))
            logger.warning(
                "dask-adaptive: %s",
                fmt(event="wrong-unit-removed", wrong=report.wrong, corrected=report.corrected),
            )
        logger.info("dask-adaptive: %s", fmt(event="removed", units=report.removed))
        return report

    def _finish(self, names: list[str], report: RemovalReport | None) -> None:
        retired = self.departures.end_removal(names, removed=report is not None)
        if report is not None and retired:
            self.count(retirements=len(report.removed))

    def forget_gone(self, alive: set[str]) -> None:
        """The controller's word after a look: GONE records of names that are neither a unit nor a
        worker any more leave the record."""
        self.departures.forget_gone(alive)
