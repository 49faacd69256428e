"""The controller's mechanism against a real in-process Scheduler and Workers, with a scripted backend.

The end-to-end tests prove the happy path with real processes; these pin the edge cases that are hard
to provoke there: aborted retirements, foreign workers, backend failures, orphans, pending units.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from distributed import Client, Scheduler, Worker
from distributed.core import Status

from dask_adaptive.backends.base import Observation, Phase, RemovalReport, Unit
from dask_adaptive.backends.departures import Departures, Reason, Stage
from dask_adaptive.config import resolve
from dask_adaptive.controller import Controller
from dask_adaptive.decisions import Hold, ScaleDown, ScaleUp
from tests.dask_adaptive.scripted_backend import ScriptedBackend, running


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def scenario(
    body: Callable[..., Awaitable[None]],
    units: list[Unit],
    workers: list[str],
    foreign: tuple[str, ...] = (),
    make_backend: Callable[..., Any] | None = None,
    **options: Any,
) -> None:
    async def main() -> None:
        settings = resolve({"min_workers": "0", "max_workers": "4", "interval": "100ms", **options})
        async with Scheduler(port=0, dashboard=False, host="127.0.0.1") as s:
            ws = [Worker(s.address, name=n, nthreads=1, dashboard=False) for n in (*workers, *foreign)]
            await asyncio.gather(*ws)
            try:
                async with Client(s.address, asynchronous=True) as client:
                    backend = (make_backend or ScriptedBackend)(*units)
                    controller = Controller(s, backend, settings, clock=Clock())
                    controller.known.update(u.name for u in units)
                    await body(s, client, backend, controller)
            finally:
                await asyncio.gather(*(w.close() for w in ws))

    asyncio.run(main())


async def scatter_to(client: Client, scheduler: Scheduler, name: str, value: str) -> Any:
    [address] = [a for a, w in scheduler.workers.items() if w.name == name]
    [future] = await client.scatter([value], workers=[address])
    return future


async def settle(controller: Controller) -> None:
    await controller.executor.settle()


def test_scale_down_cancels_unstarted_units_and_keeps_starting_ones():
    units = [*running("u1"), Unit("p-start", Phase.STARTING), Unit("p-pend", Phase.PENDING)]

    async def body(s, client, backend, controller):
        decision = await controller.step()
        assert isinstance(decision, ScaleDown) and decision.retire == 0
        await settle(controller)
        # PENDING cancelled; STARTING kept, and u1 not retired in its place (retired once arrived)
        assert backend.removed == [["p-pend"]]
        assert {"u1", "p-start"} <= set(backend.units) and controller.stats.cancelled == 1
        assert "starting=1" in decision.reason and "keep 1 starting" in decision.reason

    scenario(body, units, ["u1"], min_workers="1", scale_down_delay="0s")


def test_victims_are_ours_idle_and_least_data_first_and_data_survives():
    async def body(s, client, backend, controller):
        data = await scatter_to(client, s, "u1", "only copy on u1")
        await controller.executor.retire_and_remove(1)
        # u2 and the foreign worker hold nothing; the foreign one is never ours to retire
        assert backend.removed == [["u2"]]
        await controller.executor.retire_and_remove(1)
        assert backend.removed == [["u2"], ["u1"]]
        assert controller.stats.retirements == 2 and controller.stats.failed_retirements == 0
        holders = {ws.name for ws in s.tasks[data.key].who_has}
        assert "foreign" in holders, "u1's data was copied to the only worker left accepting data"
        assert await data == "only copy on u1"

    scenario(body, running("u1", "u2"), ["u1", "u2"], foreign=("foreign",))


def test_aborted_retirement_keeps_its_worker():
    async def body(s, client, backend, controller):
        data = await scatter_to(client, s, "u1", "nowhere else to go")
        await controller.executor.retire_and_remove(1)
        assert backend.removed == [], "a worker whose retirement aborted is never removed"
        assert controller.stats.failed_retirements == 1 and controller.departures.leaving() == set()
        [ws] = s.workers.values()
        for _ in range(100):
            if ws.status == Status.running:
                break
            await asyncio.sleep(0.05)
        assert ws.status == Status.running, "back to work"
        assert await data == "nowhere else to go"

    scenario(body, running("u1"), ["u1"])


def test_failed_removal_is_retried_and_not_counted_as_wanted():
    async def body(s, client, backend, controller):
        backend.fail_remove = 1
        await controller.executor.retire_and_remove(1)
        [victim] = controller.departures.names(Stage.READY, reason=Reason.RETIRE)  # retired, to retry
        assert controller.departures.leaving() == {victim} and backend.removed == []
        assert controller.stats.api_errors == 1
        decision = await controller.step()  # target 0, wanted = 2 requested - 1 retiring
        assert "wanted=1" in decision.reason
        await settle(controller)
        assert backend.removed == [[victim]] and controller.departures.names(Stage.GONE) == {victim}
        assert controller.departures.leaving() == set()

    scenario(body, running("u1", "u2"), ["u1", "u2"], scale_down_delay="1h")


def test_scale_up_asks_on_top_of_units_still_retiring():
    async def body(s, client, backend, controller):
        controller.executor.departures.begin(["u1"], Stage.RETIRING, Reason.RETIRE)
        s.adaptive_target = lambda **_: 3
        decision = await controller.step()
        assert decision == ScaleUp(3, decision.reason) and "wanted=0" in decision.reason
        assert backend.scaled == [4]

    scenario(body, running("u1"), ["u1"])


def test_observe_failure_is_counted_and_nothing_is_done():
    async def body(s, client, backend, controller):
        backend.fail_observe = True
        assert await controller.step() is None
        assert controller.stats.api_errors == 1 and backend.scaled == [] and backend.removed == []

    scenario(body, [], [], min_workers="2")


def test_orphan_units_and_unitless_workers_are_reconciled():
    units = [*running("u1"), Unit("o1", Phase.RUNNING)]

    async def body(s, client, backend, controller):
        clock = controller.clock
        await controller.step()
        del backend.units["u1"]  # the platform lost u1's unit; its worker lingers
        backend.requested -= 1
        clock.now = 1.0
        await controller.step()
        assert any(w.name == "u1" for w in s.workers.values()), "not before the grace period"
        clock.now = 400.0  # past orphan-grace (5m) and the unit-gone grace
        await controller.step()
        await settle(controller)
        assert ["o1"] in backend.removed
        assert not any(w.name == "u1" for w in s.workers.values())
        assert controller.stats.corrections == 2

    scenario(body, units, ["u1"], min_workers="2", max_workers="2", scale_down_delay="1h")


@pytest.mark.parametrize("n", [1, 2])
def test_choose_victims_never_exceeds_idle_workers_of_ours(n):
    async def body(s, client, backend, controller):
        controller.known.update(["u1", "u2"])
        victims = controller.executor.choose_victims(n)
        assert len(victims) == n and set(victims) <= {"u1", "u2"}

    scenario(body, running("u1", "u2"), ["u1", "u2"], foreign=("foreign",))


@pytest.mark.parametrize("node_packing", ["true", "false"])
def test_node_packing_switch_orders_victims(node_packing):
    """The scheduler ranks u4 last (most data); u4 is alone on its node. Packing frees that node,
    the switch off keeps the scheduler's pick (benchmarks/node_cost.py's "today" baseline)."""

    async def body(s, client, backend, controller):
        for i, name in enumerate(["u1", "u2", "u3", "u4"], start=1):
            await scatter_to(client, s, name, "x" * 10_000 * i)  # more data, later in the ranking
        controller.nodes.update({"u1": "A", "u2": "A", "u3": "A", "u4": "B"})
        ranking = [str(n) for n in s.workers_to_close(n=4, attribute="name")]
        assert ranking[0] != "u4" and ranking[-1] == "u4"
        expected = ["u4"] if node_packing == "true" else ranking[:1]
        assert controller.executor.choose_victims(1) == expected

    names = ("u1", "u2", "u3", "u4")
    scenario(body, running(*names), list(names), node_packing=node_packing)


def _slow_square(x: int, seconds: float) -> int:
    import time

    time.sleep(seconds)
    return x * x


@pytest.mark.parametrize("node_packing", ["true", "false"])
def test_a_busy_worker_is_drained_only_to_free_its_node(node_packing):
    """Node B holds b1 (busy) and b2 (idle); node A three idle workers. Retiring 2 frees B only if b1 goes
    too: with packing it takes no new task, finishes the one it runs (once: nothing restarts), its
    result moves to a worker that stays, then exactly b1 and b2 are removed. Packing off never touches
    a busy worker (the "today" baseline)."""

    async def body(s, client, backend, controller):
        controller.nodes.update({"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B"})
        [b1] = [a for a, ws in s.workers.items() if ws.name == "b1"]
        running_task = client.submit(_slow_square, 7, 1.5, workers=[b1], pure=False)
        while not s.workers[b1].processing:
            await asyncio.sleep(0.01)
        job = asyncio.create_task(controller.executor.retire_and_remove(2))
        await asyncio.sleep(0.3)  # b1 is retiring now: new work goes elsewhere
        later = client.submit(_slow_square, 3, 0.0, pure=False)
        assert await later == 9
        [(_, where)] = (await client.who_has([later])).items()
        await job
        removed = sorted(n for batch in backend.removed for n in batch)
        drains = [m for _, m in s.get_events("adaptive") if m["action"] == "draining"]
        if node_packing == "true":
            assert removed == ["b1", "b2"]
            assert drains == [{"action": "draining", "workers": ["b1"], "nodes": ["B"]}]
            assert "b1" not in {s.workers[a].name for a in where}, "a draining worker took a new task"
            holders = {ws.name for ws in s.tasks[running_task.key].who_has}
            assert holders & {"a1", "a2", "a3"}, f"b1's result was not copied before b1 went: {holders}"
        else:
            assert "b1" not in removed and len(removed) == 2 and not drains
        assert await running_task == 49
        assert s.tasks[running_task.key].state == "memory"
        events = [m for _, m in s.get_events("all") if m.get("action") == "task-erred"]
        assert not events and controller.stats.failed_retirements == 0

    names = ("a1", "a2", "a3", "b1", "b2")
    scenario(body, running(*names), list(names), node_packing=node_packing)


def test_foreign_workers_count_as_capacity_we_need_not_provide():
    async def body(s, client, backend, controller):
        await scatter_to(client, s, "foreign", "keeps one worker wanted")
        assert s.adaptive_target() == 1  # the data needs one worker: the foreign one holds it
        decision = await controller.step()
        assert "target=0" in decision.reason and backend.scaled == []

    scenario(body, [], [], foreign=("foreign",))


def test_workers_sharing_the_last_copies_are_not_removed_together():
    async def body(s, client, backend, controller):
        addresses = [a for a, w in s.workers.items() if w.name in ("u1", "u2")]
        await client.scatter(["on u1 and u2 only"], workers=addresses, broadcast=True)
        assert controller.executor.partition_safe(["u1"]) == (["u1"], [])  # u2 keeps a copy
        assert controller.executor.partition_safe(["u1", "u2"]) == ([], ["u1", "u2"])  # nobody staying has it

    scenario(body, running("u1", "u2"), ["u1", "u2"], foreign=("foreign",))


class BlockingRemovalBackend(ScriptedBackend):
    """remove() blocks on `release`, like a Kubernetes removal waiting for NotReady ("wait", before its
    /scale decrement) or for the ReplicaSet ("verify", after it). Keeps the Backend contract for counts:
    the decrement applies to the count at the time of the write and moves the units' records to LOWERED
    in the same step (in the departures record the executor lends), and scale_up discounts the units of
    an unfinished removal whose records are LOWERED."""

    departures: Departures  # lent by the executor (Backend.departures)

    def __init__(self, blocked_in: str, *units: Unit) -> None:
        super().__init__(*units)
        self.blocked_in = blocked_in
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def scale_up(self, n: int) -> None:
        self.scaled.append(n)
        self.requested = max(self.requested, n - len(self.departures.names(Stage.LOWERED)))

    async def remove(self, names: list[str]) -> RemovalReport:
        self.removed.append(list(names))
        self.entered.set()
        if self.blocked_in == "verify":
            self._decrement(names)
        await self.release.wait()
        if self.blocked_in == "wait":
            self._decrement(names)
        for name in names:
            self.units.pop(name, None)
        return RemovalReport(tuple(names))

    def _decrement(self, names: list[str]) -> None:
        self.requested -= len(names)
        self.departures.transition(names, Stage.LOWERED)


@pytest.mark.parametrize("blocked_in", ["wait", "verify"])
def test_a_burst_during_a_blocked_removal_scales_up_at_once_and_ends_at_the_right_count(blocked_in):
    async def body(s, client, backend, controller):
        controller.executor.start_scale_down(ScaleDown(1, (), 1, "one of the two idle workers goes"))
        await asyncio.wait_for(backend.entered.wait(), 30)
        [[victim]] = backend.removed
        s.adaptive_target = lambda **_: 3  # a burst of new work arrives while the removal is blocked
        decision = await asyncio.wait_for(controller.step(), 30)
        assert isinstance(decision, ScaleUp) and decision.wanted == 3
        assert backend.scaled == [4], "3 wanted + the unit being removed, still counted by the caller"
        assert controller.executor.busy, "the removal is still blocked"
        assert backend.requested == 4 if blocked_in == "wait" else 3
        await asyncio.wait_for(controller.step(), 30)  # the next cycle does not ask again
        assert backend.scaled == [4]
        backend.release.set()
        await settle(controller)
        assert backend.requested == 3 and backend.removed == [[victim]]
        assert controller.departures.leaving() == set()
        assert isinstance(await controller.step(), Hold)  # at target: 3 requested, none leaving
        assert backend.scaled == [4] and backend.removed == [[victim]]

    blocking = functools.partial(BlockingRemovalBackend, blocked_in)
    scenario(body, running("u1", "u2"), ["u1", "u2"], make_backend=blocking)


def test_a_retirement_that_never_finishes_is_given_up_and_the_worker_goes_back_to_work(monkeypatch):
    from distributed.active_memory_manager import RetireWorker

    hang = True
    done = RetireWorker.done
    # the scheduler's own retirement, except that the data never finishes moving
    monkeypatch.setattr(RetireWorker, "done", lambda self: False if hang else done(self))

    async def body(s, client, backend, controller):
        nonlocal hang
        data = await scatter_to(client, s, "u1", "stays reachable")
        controller.executor.start_scale_down(ScaleDown(1, (), 1, "one of two idle workers goes"))
        await asyncio.wait_for(settle(controller), 60)  # without the timeout: never
        [given_up] = [msg for _, msg in s.get_events("adaptive") if msg["action"] == "retire-timeout"]
        [victim] = given_up["workers"]
        assert backend.removed == [] and controller.departures.leaving() == set()
        assert not controller.executor.busy
        assert controller.stats.retire_timeouts == 1 and controller.stats.retirements == 0
        [ws] = [ws for ws in s.workers.values() if ws.name == victim]
        [worker] = [w for w in Worker._instances if w.address == ws.address]  # the in-process Worker
        for _ in range(200):
            if ws.status == Status.running and worker.status == Status.running:
                break
            await asyncio.sleep(0.05)
        assert (ws.status, worker.status) == (Status.running, Status.running), "back to work, both sides"
        amm = s.extensions.get("amm")
        assert not [p for p in getattr(amm, "policies", ()) if isinstance(p, RetireWorker)]
        assert await data == "stays reachable"
        hang = False  # the next scale-down is not held by the one given up
        controller.executor.start_scale_down(ScaleDown(1, (), 1, "again"))
        await asyncio.wait_for(settle(controller), 60)
        assert len(backend.removed) == 1 and controller.stats.retirements == 1
        assert await data == "stays reachable"

    scenario(body, running("u1", "u2"), ["u1", "u2"], retire_timeout="500ms")


def test_a_departure_moves_forward_only_and_a_failed_removal_goes_back_to_ready():
    d = Departures()
    d.begin(["a", "b"], Stage.RETIRING, Reason.RETIRE)
    d.begin(["c"], Stage.READY, Reason.CANCEL)
    assert d.begin(["a"], Stage.READY, Reason.CANCEL) == [] and d.get("a").reason is Reason.RETIRE  # kept
    d.transition(["a", "b"], Stage.READY)
    d.transition(["a", "b", "c"], Stage.REMOVING)
    d.transition(["a"], Stage.LOWERED)
    assert d.names(Stage.REMOVING) == {"b", "c"} and d.names(Stage.LOWERED) == {"a"}
    assert d.leaving() == {"a", "b", "c"}
    d.transition(["a"], Stage.GONE)
    d.transition(["b"], Stage.READY)  # its removal failed: retried
    assert d.leaving() == {"b", "c"} and d.names(Stage.READY, reason=Reason.RETIRE) == {"b"}
    with pytest.raises(ValueError, match="GONE cannot become REMOVING"):
        d.transition(["a"], Stage.REMOVING)
    with pytest.raises(ValueError, match="READY cannot become LOWERED"):
        d.transition(["b"], Stage.LOWERED)
    d.forget_gone(alive={"b", "c"})
    assert "a" not in d and "b" in d


def test_the_distributed_internals_we_use_are_still_there():
    """dask_adaptive/internals.py reaches into distributed to stop a retirement; if distributed renames
    or reshapes any of this, this test says which part, before a scale-down finds out."""
    import inspect

    from distributed.active_memory_manager import ActiveMemoryManagerExtension, RetireWorker

    assert "address" in RetireWorker.__slots__, "RetireWorker.address is gone"
    params = inspect.signature(Scheduler.handle_worker_status_change).parameters
    assert list(params)[1:] == ["status", "worker", "stimulus_id"], "handle_worker_status_change changed"
    assert list(inspect.signature(Scheduler.worker_send).parameters)[1:] == ["worker", "msg"]
    assert "worker-status-change" in inspect.getsource(Scheduler.retire_workers), "the abort message changed"

    async def main() -> None:
        async with Scheduler(port=0, dashboard=False, host="127.0.0.1") as s:
            amm = s.extensions.get("amm")
            assert isinstance(amm, ActiveMemoryManagerExtension), "no AMM extension on the scheduler"
            assert isinstance(amm.policies, set), "ActiveMemoryManagerExtension.policies is not a set"
            policy = RetireWorker("tcp://127.0.0.1:1")
            amm.add_policy(policy)
            assert policy in amm.policies

    asyncio.run(main())


def _pause(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@pytest.mark.parametrize(("runs_on", "expected"), [("u1", Hold), ("foreign", ScaleDown)])
def test_a_task_between_two_looks_counts_as_busy_only_on_our_worker(runs_on, expected):
    """Issue 13 §5: a look in a pause sees an idle scheduler; the task that ran since the previous look
    still holds our worker (the scheduler plugin saw it start). A foreign worker's task does not."""

    async def body(s, client, backend, controller):
        [address] = [a for a, w in s.workers.items() if w.name == runs_on]
        future = client.submit(_pause, 0.2, workers=[address], pure=False)
        assert await future == 0.2
        del future  # the result released: nothing left on the scheduler
        while s.tasks:
            await asyncio.sleep(0.01)
        assert s.adaptive_target() == 0  # nothing processing at this look
        decision = await controller.step()
        assert isinstance(decision, expected), decision
        assert ("busy=1" in decision.reason) == (runs_on == "u1")
        if expected is Hold:
            # the next look, with no task since, sees an idle worker again
            assert isinstance(await controller.step(), ScaleDown)

    scenario(body, running("u1"), ["u1"], foreign=("foreign",), scale_down_delay="0s")


def test_a_minimum_schedule_scales_up_at_its_start_and_lets_go_after_its_end(caplog):
    """Issue 13 §2: no work at all, yet the window's start asks for its workers and says why; after the
    end they go like any idle workers, once the scale-down delay has passed."""
    schedule = "Mon-Fri 08:00-18:00 Europe/London=3"
    london = {"now": datetime(2026, 3, 2, 7, 59, 59, tzinfo=UTC)}  # a Monday, GMT

    async def body(s, client, backend, controller):
        controller.wall = lambda: london["now"]
        assert isinstance(await controller.step(), Hold) and backend.scaled == []
        london["now"] = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)
        with caplog.at_level(logging.INFO, logger="dask_adaptive"):
            decision = await controller.step()
        assert decision == ScaleUp(3, decision.reason) and backend.scaled == [3]
        cause = f"to minimum 3 (min-workers-schedule {schedule})"
        assert decision.reason.startswith(f"scale up now {cause}: target=0")
        assert any(cause in r.getMessage() and "ScaleUp" in r.getMessage() for r in caplog.records)
        assert any("event=minimum minimum=3 was=0" in r.getMessage() for r in caplog.records)
        london["now"] = datetime(2026, 3, 2, 17, 59, 59, tzinfo=UTC)
        controller.clock.now = 100.0
        assert isinstance(await controller.step(), Hold)
        london["now"] = datetime(2026, 3, 2, 18, 0, 0, tzinfo=UTC)
        controller.clock.now = 101.0
        decision = await controller.step()
        assert isinstance(decision, Hold) and decision.reason.startswith("needed 3 within the last 30s")
        assert controller.limits.minimum == 0  # --min-workers again
        controller.clock.now = 131.0
        decision = await controller.step()
        assert isinstance(decision, ScaleDown) and decision.wanted == 0

    scenario(body, [], [], min_workers_schedule=schedule, scale_down_delay="30s")


def test_a_window_below_the_minimum_changes_nothing():
    async def body(s, client, backend, controller):
        controller.wall = lambda: datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
        decision = await controller.step()
        assert decision == ScaleUp(2, decision.reason) and "(--min-workers)" in decision.reason
        assert controller.limits.minimum == 2

    scenario(body, [], [], min_workers="2", min_workers_schedule="00:00-24:00 UTC=1")


def test_the_executor_shares_no_mutable_state_with_the_controller():
    """One departures record, owned by the executor and lent to the backend; the controller only reads it.
    The look reaches the executor as copied values, counts and events through the controller's sinks:
    no object the controller keeps is held by the executor (but the scheduler and the frozen settings)."""

    async def body(s, client, backend, controller):
        executor = controller.executor
        assert backend.departures is executor.departures is controller.departures
        mine = {
            name: v
            for name, v in vars(controller).items()
            if name not in ("scheduler", "settings") and v is not None
        }
        held = [(e, c) for e, v in vars(executor).items() for c, w in mine.items() if v is w]
        assert held == [], held
        controller.nodes.update({"u1": "A"})
        look = executor.look()
        controller.known.add("later")
        controller.nodes["u1"] = "B"
        assert "later" not in look.units and look.nodes["u1"] == "A", "a look is a copy"
        with pytest.raises(TypeError):
            look.nodes["u1"] = "C"  # type: ignore[index]
        assert "later" in executor.look().units and executor.look().nodes["u1"] == "B"
        executor.count(retirements=2)  # how the executor's counts reach the controller's stats
        assert controller.stats.retirements == 2

    scenario(body, running("u1"), ["u1"])


def test_a_decrement_that_lands_during_a_look_is_seen_with_the_count_it_lowered():
    """The backend moves the units of its decrement to LOWERED in the same step as the write, and reads
    `requested` last: the controller's `retiring` never counts a unit the count no longer holds."""

    class LowersDuringObserve(ScriptedBackend):
        departures: Departures

        async def observe(self) -> Observation:
            units = tuple(self.units.values())
            await asyncio.sleep(0)  # a removal's write lands here, between the listing and the count
            self.requested -= 1
            self.departures.transition(["u2"], Stage.LOWERED)
            return Observation(self.requested, units)

    async def body(s, client, backend, controller):
        d = controller.executor.departures
        d.begin(["u2"], Stage.READY, Reason.RETIRE)
        d.transition(["u2"], Stage.REMOVING)  # as the executor does before backend.remove
        decision = await controller.step()
        assert "wanted=1" in decision.reason and "retiring=0" in decision.reason, decision.reason

    scenario(body, running("u1", "u2"), ["u1", "u2"], make_backend=LowersDuringObserve, scale_down_delay="1h")
