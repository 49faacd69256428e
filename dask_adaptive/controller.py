"""The control loop inside the scheduler: look, decide (policy.py), act through a Backend.

Runs on the scheduler's event loop and calls the Scheduler object directly (no RPC to itself).
Everything it awaits is either a cheap scheduler call or async backend I/O, so the loop never blocks.

Scale-down is the data-safe sequence, run as a background task so a slow retirement or removal (a
Kubernetes removal may wait a minute for the platform) never delays a scale-up; the two never share a
lock. Units on their way out are kept in `retiring` (never capacity, never pending) until their removal
returns, and a unit handed to `backend.remove` is never handed again while that call runs; a scale-up
meanwhile asks on top of them and the backend discounts those whose decrement already landed
(Backend.scale_up):
1. cancel not-yet-arrived units (no data there);
2. pick victims with `Scheduler.workers_to_close` (idle, least data first), only among our units;
3. `retire_workers(names=..., close_workers=False, remove=False)`: data moves, the workers take no
   new work and stay alive (so nothing restarts and rejoins in the meantime);
4. keep only those the scheduler reports retired, and check again that they hold nothing unique
   (steps 3-4 are bounded by `retire-timeout`: a retirement that cannot finish is given up and its
   workers go back to work, so it cannot hold this and every later scale-down forever);
5. `backend.remove(exactly those)`; once their units are gone the reconcile step drops any worker
   the scheduler still lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from distributed.active_memory_manager import RetireWorker
from distributed.core import Status

from dask_adaptive.backends.base import Backend, BackendError, Observation, Phase, RemovalReport
from dask_adaptive.config import Settings
from dask_adaptive.metrics import Stats
from dask_adaptive.policy import Decision, History, Hold, Limits, ScaleDown, ScaleUp, Snapshot, decide
from dask_adaptive.reconcile import reconcile

logger = logging.getLogger("dask_adaptive")

ACCEPTING = (Status.running, Status.paused)
# a pending unit that is cheaper to cancel sorts first
_CANCEL_ORDER = {Phase.PENDING: 0, Phase.STARTING: 1, Phase.RUNNING: 2, Phase.TERMINATING: 3}


def _fmt(**fields: object) -> str:
    """One structured log line: key=value pairs, values with spaces quoted."""
    out = []
    for key, value in fields.items():
        text = ",".join(map(str, value)) if isinstance(value, list | tuple | set) else str(value)
        out.append(f'{key}="{text}"' if " " in text or not text else f"{key}={text}")
    return " ".join(out)


class Controller:
    def __init__(
        self,
        scheduler: Any,  # distributed.Scheduler; Any because its attributes are used duck-typed
        backend: Backend,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduler = scheduler
        self.backend = backend
        self.settings = settings
        self.clock = clock
        self.limits = Limits(settings.minimum, settings.maximum, settings.scale_down_delay)
        self.stats = Stats()
        self.history = History()
        self.retiring: set[str] = set()  # on their way out: never capacity; counted as requested until
        # their removal returns (the backend's Observation.subtracted tells which decrements landed)
        self.removing: set[str] = set()  # handed to backend.remove, not returned: never handed twice
        self.unremoved: set[str] = set()  # retired, but backend.remove failed: retried every cycle
        self.dropping: set[str] = set()  # removed after retirement: their exit is expected
        self.known: set[str] = set()
        self._no_worker_since: dict[str, float] = {}
        self._unit_gone_since: dict[str, float] = {}
        self._removals_done = 0  # removals that returned: tells a step its observation went stale
        self._loop_task: asyncio.Task[None] | None = None
        self._scale_down_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._last_logged: tuple[str, int] | None = None
        self._seen_arrived: set[str] = set()
        self.metrics_handle: object | None = None  # set by the preload: prometheus registration

    # ----------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Check the backend (BackendUnavailable propagates) and start the loop."""
        await self.backend.start()
        self._loop_task = asyncio.create_task(self._run(), name="dask-adaptive-loop")
        self._event("started", settings=repr(self.settings))

    async def stop(self) -> None:
        for task in (self._loop_task, self._scale_down_task, *self._background):
            if task is not None:
                task.cancel()
        for task in (self._loop_task, self._scale_down_task, *self._background):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        await self.backend.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                # like distributed's Adaptive: one bad cycle must not end autoscaling
                logger.exception("dask-adaptive: error in control loop; continuing")
            await asyncio.sleep(self.settings.interval)

    # ----------------------------------------------------------------------------- one cycle
    def _workers_by_name(self) -> dict[str, Any]:
        return {str(ws.name): ws for ws in self.scheduler.workers.values()}

    async def step(self) -> Decision | None:
        removals_done = self._removals_done
        try:
            obs = await self.backend.observe()
        except BackendError as e:
            self.stats.api_errors += 1
            logger.warning("dask-adaptive: %s", _fmt(event="observe-failed", error=e))
            return None
        if self._removals_done != removals_done:
            # a removal returned while we looked: `requested` may predate its decrement while `retiring`
            # no longer holds its units, so wanted would be too high; the next look is consistent
            logger.debug("dask-adaptive: %s", _fmt(event="observation-stale", reason="removal returned"))
            return None
        now = self.clock()
        workers = self._workers_by_name()
        self.known.update(u.name for u in obs.units)
        snap = self._snapshot(now, obs, workers)
        new = set(snap.arrived) - self._seen_arrived
        if new:
            self._event("arrived", units=sorted(new))
        self._seen_arrived = set(snap.arrived)
        decision, self.history = decide(snap, self.limits, self.history)
        self._update_gauges(snap, decision)
        self._log_decision(decision)
        if isinstance(decision, ScaleUp):
            await self._scale_up(decision)
        elif isinstance(decision, ScaleDown):
            self._start_scale_down(decision)
        if self.unremoved and not self._busy():
            self._scale_down_task = asyncio.create_task(self._retry_removal(sorted(self.unremoved)))
        await self._reconcile(now, obs, workers)
        return decision

    def _snapshot(self, now: float, obs: Observation, workers: dict[str, Any]) -> Snapshot:
        arrived, pending = [], []
        for unit in sorted(obs.units, key=lambda u: _CANCEL_ORDER[u.phase]):
            if unit.phase is Phase.TERMINATING or unit.name in self.retiring:
                continue
            ws = workers.get(unit.name)
            if ws is None:
                pending.append(unit.name)
            elif ws.status in ACCEPTING:
                arrived.append(unit.name)
            # else: a worker leaving on its own (SIGTERM, closing): neither capacity nor cancellable
        # adaptive_target counts every worker; those we did not start (another group, a manual
        # `dask worker`) already provide their share, so we supply only the rest
        foreign = sum(1 for name, ws in workers.items() if name not in self.known and ws.status in ACCEPTING)
        target = int(self.scheduler.adaptive_target(target_duration=self.settings.target_duration))
        return Snapshot(
            now=now,
            target=max(0, target - foreign),
            requested=obs.requested,
            arrived=tuple(arrived),
            pending=tuple(pending),
            # units leaving whose decrement has not landed yet are still in `requested`
            retiring=len(self.retiring - set(obs.subtracted)),
            in_progress=self._busy() or bool(self.retiring),
        )

    def _update_gauges(self, snap: Snapshot, decision: Decision) -> None:
        self.stats.desired = max(self.limits.minimum, min(self.limits.maximum, snap.target))
        self.stats.requested = snap.requested
        self.stats.pending = len(snap.pending)
        self.stats.observed = len(snap.arrived)
        self.stats.retiring = snap.retiring

    def _log_decision(self, decision: Decision) -> None:
        kind = type(decision).__name__
        wanted = getattr(decision, "wanted", -1)
        line = _fmt(decision=kind, wanted=wanted if wanted >= 0 else "-", reason=decision.reason)
        # a Hold repeats every interval: log it once per change, the actions always
        if isinstance(decision, Hold) and self._last_logged == (decision.reason.split(":")[0], wanted):
            logger.debug("dask-adaptive: %s", line)
            return
        self._last_logged = (decision.reason.split(":")[0], wanted)
        logger.info("dask-adaptive: %s", line)
        if not isinstance(decision, Hold):
            self._event(kind, wanted=wanted, reason=decision.reason)

    def _event(self, action: str, **fields: Any) -> None:
        """Scheduler event (Client.get_events("adaptive")) and, for actions, a backend record."""
        self.scheduler.log_event("adaptive", {"action": action, **fields})
        if action in ("ScaleUp", "ScaleDown", "retired", "retire-aborted", "retire-timeout", "corrected"):
            self._spawn(self.backend.record(action, _fmt(**fields)))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _busy(self) -> bool:
        return self._scale_down_task is not None and not self._scale_down_task.done()

    # ----------------------------------------------------------------------------- scale up
    async def _scale_up(self, decision: ScaleUp) -> None:
        """Never waits for a scale-down: no lock is shared with a removal (see the module docstring)."""
        # units leaving are in the backend's count until their removal returns: ask on top of them; the
        # backend discounts those whose decrement lands first. n is computed and handed over without an
        # await in between, so it matches the removals the backend sees as unfinished at the call.
        n = decision.wanted + len(self.retiring)
        try:
            await self.backend.scale_up(n)
        except BackendError as e:
            self.stats.api_errors += 1
            logger.warning("dask-adaptive: %s", _fmt(event="scale-up-failed", n=n, error=e))
            return
        self.stats.scale_ups += 1

    # ----------------------------------------------------------------------------- scale down
    def _start_scale_down(self, decision: ScaleDown) -> None:
        if self._busy():
            return
        self.retiring.update(decision.cancel)  # counted out of `wanted` from now on
        self._scale_down_task = asyncio.create_task(self._scale_down(decision), name="dask-adaptive-down")

    async def _scale_down(self, decision: ScaleDown) -> None:
        try:
            before = (self.stats.cancelled, self.stats.retirements)
            if decision.cancel:
                await self._cancel(list(decision.cancel))
            if decision.retire:
                await self._retire_and_remove(decision.retire)
            if (self.stats.cancelled, self.stats.retirements) != before:
                self.stats.scale_downs += 1
        except Exception:
            # a background task: log here, or the error would surface only at garbage collection
            logger.exception("dask-adaptive: scale-down failed; the next cycle starts over")
        finally:
            # normally done by _cancel already; a unit that arrived meanwhile may have become a victim
            # whose removal failed: that one stays leaving (retried from `unremoved`)
            self.retiring -= set(decision.cancel) - self.unremoved

    async def _cancel(self, names: list[str]) -> None:
        workers = self._workers_by_name()
        arrived = [n for n in names if n in workers]  # joined since the decision: retire next time
        cancel = [n for n in names if n not in workers]
        if arrived:
            self.retiring -= set(arrived)  # capacity again
            logger.info("dask-adaptive: %s", _fmt(event="cancel-skipped-arrived", units=arrived))
        if not cancel:
            return
        report = await self._remove(cancel)
        # at once (not after the rest of the scale-down): their decrement has landed, so counting them
        # as leaving any longer would make the next scale-up ask for them again
        self.retiring -= set(cancel)
        if report is not None:
            self.stats.cancelled += len(report.removed)
            self._event("cancelled", units=list(report.removed))

    def choose_victims(self, k: int) -> list[str]:
        """The scheduler's own ranking (idle, least data first; plugin vetoes respected), restricted
        to idle, accepting workers of our units."""
        workers = self._workers_by_name()
        # n = all workers turns workers_to_close into a full ranking instead of a memory-ratio cut
        ranking = self.scheduler.workers_to_close(n=len(self.scheduler.workers), attribute="name")
        ours = set(self.known) - self.retiring
        victims = []
        for name in map(str, ranking):
            ws = workers.get(name)
            if name in ours and ws is not None and ws.status in ACCEPTING and not ws.processing:
                victims.append(name)
            if len(victims) == k:
                break
        return victims

    async def _retire_and_remove(self, k: int) -> None:
        victims = self.choose_victims(k)
        if not victims:
            logger.info("dask-adaptive: %s", _fmt(event="no-idle-victims", wanted_to_retire=k))
            return
        self.retiring.update(victims)
        kept: list[str] = []
        try:
            kept = await asyncio.wait_for(self._retire(victims), self.settings.retire_timeout)
        except TimeoutError:
            self._give_up_retirement(victims)
        finally:
            self.retiring -= set(victims) - set(kept)
        if kept:
            self.unremoved.update(kept)
            await self._remove_retired(kept)

    async def _retire(self, names: list[str]) -> list[str]:
        stimulus = f"dask-adaptive-retire-{time.time()}"
        result = await self.scheduler.retire_workers(
            names=names, close_workers=False, remove=False, stimulus_id=stimulus
        )
        retired = sorted(str(info["name"]) for info in result.values())
        aborted = sorted(set(names) - set(retired))
        if aborted:
            self.stats.failed_retirements += len(aborted)
            self._event("retire-aborted", workers=aborted)
            logger.warning("dask-adaptive: %s", _fmt(event="retire-aborted", workers=aborted))
        safe, unsafe = self._partition_safe(retired)
        if unsafe:
            # a task that was finishing during retirement can leave a fresh unique key behind:
            # one more retirement moves it; if that does not help, the worker goes back to work
            again = await self.scheduler.retire_workers(
                names=unsafe, close_workers=False, remove=False, stimulus_id=stimulus + "-again"
            )
            safe2, still = self._partition_safe(sorted(str(i["name"]) for i in again.values()))
            safe += safe2
            for name in set(unsafe) - set(safe2):
                self._unretire(name, stimulus)
            if still or set(unsafe) - set(safe2):
                self.stats.failed_retirements += len(set(unsafe) - set(safe2))
        if safe:
            self._event("retired", workers=safe)
        return safe

    def _partition_safe(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """Safe to remove: idle, and every key it holds has a copy on a worker that stays (accepting
        work and not itself on its way out), so removing several retired workers at once cannot
        take the last copies with them."""
        workers = self._workers_by_name()
        leaving = set(names) | self.retiring
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

    def _give_up_retirement(self, names: list[str]) -> None:
        """A retirement outlived `retire-timeout` (its retire_workers call is cancelled by now): stop the
        scheduler moving data off these workers and put them back to work; the next scale-down picks
        victims afresh. Nothing was removed, so nothing is lost."""
        workers = self._workers_by_name()
        addresses = {workers[n].address for n in names if n in workers}
        amm = self.scheduler.extensions.get("amm")
        if amm is not None:  # retire_workers' policies stay in a running AMM until they finish
            for policy in list(amm.policies):
                if isinstance(policy, RetireWorker) and policy.address in addresses:
                    amm.policies.discard(policy)
        stimulus = f"dask-adaptive-retire-timeout-{time.time()}"
        for name in names:
            self._unretire(name, stimulus)
        self.stats.retire_timeouts += len(names)
        self._event("retire-timeout", workers=names, timeout=self.settings.retire_timeout)
        logger.warning(
            "dask-adaptive: %s",
            _fmt(event="retire-timeout", workers=names, timeout=f"{self.settings.retire_timeout:g}s"),
        )

    def _unretire(self, name: str, stimulus: str) -> None:
        """Give a worker back its work. Hand-written because the scheduler only restores the status
        itself when a retirement aborts; this mirrors that path (scheduler state, then worker)."""
        ws = self._workers_by_name().get(name)
        if ws is None or ws.status != Status.closing_gracefully:
            return
        self.scheduler.handle_worker_status_change(Status.running, ws, stimulus)
        self.scheduler.stream_comms[ws.address].send(
            {"op": "worker-status-change", "status": Status.running.name, "stimulus_id": stimulus}
        )
        logger.warning("dask-adaptive: %s", _fmt(event="unretired", worker=name))

    async def _retry_removal(self, names: list[str]) -> None:
        try:
            await self._remove_retired(names)
        except Exception:
            logger.exception("dask-adaptive: removing retired workers failed; retrying next cycle")

    async def _remove_retired(self, names: list[str]) -> None:
        report = await self._remove(names)
        if report is None:
            return  # kept in `unremoved` and `retiring`; retried next cycle
        self.unremoved -= set(names)
        self.retiring -= set(names)
        self.dropping.update(names)
        self.stats.retirements += len(report.removed)

    async def _remove(self, names: list[str]) -> RemovalReport | None:
        """backend.remove; None if it failed. Callers update `retiring` right after it returns, with no
        await in between, so a step never sees a landed decrement with its units still leaving."""
        busy = [n for n in names if n in self.removing]
        if busy:  # the scale-down slot is single, so this is a guard, not a path
            logger.warning("dask-adaptive: %s", _fmt(event="remove-already-in-flight", units=busy))
            names = [n for n in names if n not in self.removing]
            if not names:
                return None
        self.removing.update(names)
        try:
            report = await self.backend.remove(names)
        except BackendError as e:
            self.stats.api_errors += 1
            logger.warning("dask-adaptive: %s", _fmt(event="remove-failed", units=names, error=e))
            return None
        finally:
            self.removing.difference_update(names)
            self._removals_done += 1
        if report.wrong or report.corrected:
            self.stats.corrections += len(report.corrected) or len(report.wrong)
            self._event("corrected", wrong=list(report.wrong), corrected=list(report.corrected))
            logger.warning(
                "dask-adaptive: %s",
                _fmt(event="wrong-unit-removed", wrong=report.wrong, corrected=report.corrected),
            )
        logger.info("dask-adaptive: %s", _fmt(event="removed", units=report.removed))
        return report

    # ----------------------------------------------------------------------------- reconcile
    async def _remove_orphans(self, names: list[str]) -> None:
        try:
            await self._remove(names)
        except Exception:
            logger.exception("dask-adaptive: removing orphan units failed; retrying next cycle")
        finally:
            self.retiring -= set(names)

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
        orphans = [n for n in findings.orphans if n not in self.retiring]
        if orphans and not self._busy():
            logger.warning("dask-adaptive: %s", _fmt(event="orphan-units", units=orphans))
            self.stats.corrections += len(orphans)
            self._event("corrected", orphans=orphans)
            # in the background like any removal (a Kubernetes removal may wait for the platform);
            # out of `wanted` meanwhile, so a replacement can be asked for at once
            self.retiring.update(orphans)
            self._scale_down_task = asyncio.create_task(self._remove_orphans(orphans))
        for name in findings.unitless:
            ws = workers[name]
            expected = name in self.dropping
            if not expected:
                self.stats.corrections += 1
                self._event("corrected", unitless=name)
            logger.info(
                "dask-adaptive: %s", _fmt(event="drop-unitless-worker", worker=name, expected=expected)
            )
            await self.scheduler.remove_worker(
                ws.address, stimulus_id=f"dask-adaptive-unitless-{time.time()}", expected=expected, close=True
            )
        # forget names that are neither units nor workers any more
        unit_names = {u.name for u in obs.units}
        self.known &= unit_names | set(workers)
        self.dropping &= unit_names | set(workers)
