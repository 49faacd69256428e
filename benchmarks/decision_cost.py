"""Decision cost: how long one adapt decision of the controller takes as the cluster grows.

The state is a REAL `distributed.Scheduler` object (not started, no network) populated through its own
APIs: workers are `WorkerState`s registered the way `Scheduler.add_worker` registers them (workers,
running, host_info, totals, aliases, `check_idle_saturated`, the plugins' `add_worker`), tasks are
created with `Scheduler.new_task` and moved to `waiting` by the scheduler's own transition engine, so
each worker gets its queuing-limited share `processing` and the rest sits in `Scheduler.queued`, exactly
as in a live scheduler with the default worker-saturation. The workers are in-process stand-ins (no
processes, no comms): messages the transitions send to them are dropped by `send_all` (no stream comm).

Timed paths, each the median of repeated calls:
- `tick (busy)`: `Controller.step()` of dask_adaptive with an in-memory backend that reports one
  RUNNING unit per worker (no I/O): snapshot with `adaptive_target`, policy, gauges, reconcile;
  maximum = the worker count, so with the queue full the decision is the steady-state Hold;
- `scale-down decision (idle)`: the same workers with no tasks and a window already covered:
  snapshot + policy (a ScaleDown) + victim choice (`ScaleDownExecutor.choose_victims`, i.e. the scheduler's
  `workers_to_close` ranking filtered to our idle units), without the retirement I/O that follows;
- baseline: distributed's own `Scheduler.adaptive_target()` alone on the same state.

Plugin cost: the preload's one scheduler plugin (activity.py) runs on every transition of every task,
so its price is paid on the scheduler's hottest path, not once per decision. A scheduler always has
plugins of its own (work stealing, shuffle), so the per-transition plugin loop runs anyway; the baseline
is that scheduler without ours, measured in the same run:
- `hook`: our `transition` called directly with the arguments the scheduler passes, along one task's
  life, vs the no-op hook of a plugin that overrides nothing;
- `engine`: no-op tasks through the scheduler's own code as a client and workers drive it, without
  comms: submitted in one `transitions` call (as update_graph does), each finished by
  `handle_task_finished` (as a worker's message is; queued tasks then go out), released by the client.
  Scheduler CPU time per task: baseline, + a no-op plugin (the price of one more hook), + ours, + ours
  and a no-op plugin (two hooks, as before Wake was merged into it); rounds of one run each, in
  alternating order;
- `end to end`: no-op tasks through an in-process LocalCluster (2 workers, 1 thread each, inproc
  comms), wall time per task without and with our plugin, pairs of runs in alternating order.
Two ratios: of the best runs (the machine's other work only ever adds time), and the median of the
ratios to the baseline run of the same round (pairing cancels drift), with their middle half: how much
the noise alone moves them. The plugin cost's sizes follow --budget (see --help).

Look cost (benchmarks/look_cost.py): what the kubernetes backend's look adds on the scheduler's loop at 100
and 1000 worker pods (and on the real control plane), list-per-look (the baseline) vs the watch cache.

Usage: .venv/bin/python benchmarks/decision_cost.py [--quick] [--plugin-tasks 0] [--look-real 0]
       [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import logging
import statistics
import sys
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import look_cost
from _common import Tee, load, ratio, table, write_section
from distributed.diagnostics.plugin import SchedulerPlugin

from dask_adaptive.activity import Activity
from dask_adaptive.backends.base import Observation, Phase, RemovalReport, Unit
from dask_adaptive.config import resolve
from dask_adaptive.controller import Controller
from dask_adaptive.decisions import History, ScaleDown, decide

TARGET_DURATION = 5.0


class MemoryBackend:
    """The Backend protocol without I/O: one RUNNING unit per worker, fixed requested count."""

    def __init__(self, names: list[str]) -> None:
        self.obs = Observation(len(names), tuple(Unit(n, Phase.RUNNING, True) for n in names))

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def observe(self) -> Observation:
        return self.obs

    async def scale_up(self, n: int) -> None: ...

    async def remove(self, names: list[str]) -> RemovalReport:
        return RemovalReport(tuple(names))

    async def record(self, reason: str, message: str) -> None: ...


def populate(n_workers: int, n_tasks: int) -> Any:
    """A Scheduler holding n_workers running 1-thread workers and n_tasks runnable tasks."""
    from dask._task_spec import Task
    from distributed import Scheduler
    from distributed.core import Status
    from distributed.scheduler import WorkerState

    s = Scheduler(validate=False, dashboard=False, dashboard_address="127.0.0.1:0", port=0)
    for i in range(n_workers):
        address, host = f"tcp://10.{i // 250}.{i % 250}.1:40000", f"10.{i // 250}.{i % 250}.1"
        name = f"worker-{i}"
        ws = WorkerState(
            address=address,
            status=Status.running,
            pid=0,
            nthreads=1,
            memory_limit=2**30,
            name=name,
            local_directory="/tmp",
            services={},
            versions={},
            nanny=None,
            extra={},
            server_id=f"id-{i}",
            scheduler=s,
        )
        s.workers[address] = ws
        s.running.add(ws)
        info = s.host_info.setdefault(host, {"addresses": set(), "nthreads": 0})
        info["addresses"].add(address)
        info["nthreads"] += 1
        s.total_memory += ws.memory_limit
        s.total_nthreads += 1
        s.aliases[name] = address
        s.check_idle_saturated(ws)
        for plugin in list(s.plugins.values()):  # work stealing's per-worker state, as add_worker does
            assert plugin.add_worker(scheduler=s, worker=address) is None, "an async add_worker hook"
    recs: dict[Any, str] = {}
    for i in range(n_tasks):
        key = f"leaf-{i}"
        ts = s.new_task(key, Task(key, time.sleep, 1.0), "released")
        ts.priority = (0, i)
        recs[key] = "waiting"
    if recs:
        s.transitions(recs, stimulus_id="bench-populate")
    return s


def time_calls(fn: Callable[[], Awaitable[Any]], budget: float) -> float:
    """Median seconds per call of an async callable, repeated for about `budget` seconds."""

    async def go() -> float:
        await fn()  # warm-up
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 5 or (time.perf_counter() - start < budget and len(times) < 2000):
            t = time.perf_counter()
            await fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    return asyncio.get_event_loop().run_until_complete(go())


@contextlib.contextmanager
def own_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A fresh event loop as the current one (the stand-in Scheduler binds to it), closed afterwards."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield loop
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def populated(loop: asyncio.AbstractEventLoop, n_workers: int, n_tasks: int) -> Any:
    """`populate` run on `loop` (a Scheduler must be made inside a running loop)."""

    async def build() -> Any:
        return populate(n_workers, n_tasks)

    return loop.run_until_complete(build())


def measure(n_workers: int, n_tasks: int, budget: float) -> dict[str, Any]:
    with own_loop() as loop:
        t = time.perf_counter()
        s = populated(loop, n_workers, n_tasks)
        built = time.perf_counter() - t
        names = [str(ws.name) for ws in s.workers.values()]
        settings = resolve(
            {"backend": "local", "max_workers": str(max(1, n_workers)), "scale_down_delay": "0s"}
        )
        controller = Controller(s, MemoryBackend(names), settings)
        controller.known.update(names)

        async def baseline() -> None:
            s.adaptive_target(target_duration=TARGET_DURATION)

        async def tick() -> None:
            await controller.step()

        out: dict[str, Any] = {
            "queued": len(s.queued),
            "processing": sum(len(ws.processing) for ws in s.workers.values()),
            "built": built,
        }
        if n_tasks:
            out["tick"] = time_calls(tick, budget)
            out["decision"] = type(loop.run_until_complete(controller.step())).__name__
        else:
            history = History(((-1e9, 0),))

            async def down() -> None:
                obs = await controller.backend.observe()
                now = controller.clock()
                snap = controller.snapshot(now, obs)
                decision, _ = decide(snap, controller.limits, history)
                if isinstance(decision, ScaleDown):
                    controller.executor.choose_victims(decision.retire)

            out["tick"] = time_calls(down, budget)
            obs = MemoryBackend(names).obs
            snap = controller.snapshot(controller.clock(), obs)
            decision, _ = decide(snap, controller.limits, history)
            executor = controller.executor
            victims = executor.choose_victims(decision.retire) if isinstance(decision, ScaleDown) else []
            out["decision"] = f"{type(decision).__name__}, {len(victims)} victims"
        out["baseline"] = time_calls(baseline, budget)
        loop.run_until_complete(controller.backend.close())
        s.http_server.stop()  # the only socket it opened (port 0); the Scheduler was never started
        return out


# ----------------------------------------------------------------------------- plugin cost
BASE, EMPTY, OURS = "distributed's own plugins", "+ a no-op plugin", "+ dask-adaptive"
TWO = "+ dask-adaptive + a no-op plugin"  # two hooks, as before Wake was merged into Activity
REPEATS = 15  # of each direct hook timing


def noop(x: Any = None) -> None:
    return None


class Empty(SchedulerPlugin):
    """A plugin that overrides nothing: what one more plugin costs the scheduler per transition."""

    name = "bench-no-op"


def our_plugin(s: Any) -> Activity:
    """The preload's plugin as the Controller builds it, every worker of `s` one of ours; unregistered."""
    names = [str(ws.name) for ws in s.workers.values()]
    controller = Controller(s, MemoryBackend(names), resolve({"backend": "local"}))
    controller.known.update(names)
    s.remove_plugin(name=Activity.name)
    return controller.activity


def spread(ratios: list[float]) -> str:
    """The middle half of paired ratios: how much of a difference the noise alone makes."""
    if len(ratios) < 2:
        return "-"
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return f"{q1:.3f}-{q3:.3f}"


def hook_cost(number: int) -> list[list[Any]]:
    """Microseconds per call of our `transition` hook and of a no-op hook along one queued task's life,
    with the keyword arguments the scheduler passes (as in the engine runs below); best of REPEATS."""
    with own_loop() as loop:
        s = populated(loop, 10, 200)
        ours, empty = our_plugin(s), Empty()
        ours.take()  # as after a look: the workers processing now are counted already
        ts = next(t for t in s.tasks.values() if t.state == "processing")
        done = {"worker": ts.processing_on.address, "nbytes": 28, "type": b"int", "typename": "int"}
        done |= {"metadata": {}, "thread": 1, "startstops": ({"action": "compute", "start": 0, "stop": 1},)}
        life = [  # (start, finish, kwargs besides stimulus_id, what our hook does)
            ("released", "waiting", {}, "returns at once"),
            ("waiting", "queued", {}, "returns at once"),
            ("queued", "processing", {}, "its worker already counted"),
            ("processing", "memory", done, "not its prefix's first result"),
            ("memory", "forgotten", {}, "returns at once"),
        ]
        rows, total = [], {EMPTY: 0.0, OURS: 0.0}
        for start, finish, kwargs, what in life:
            stmt = f"hook(key, {start!r}, {finish!r}, stimulus_id='bench', **kw)"
            timers = {
                label: timeit.Timer(stmt, globals={"hook": plugin.transition, "key": ts.key, "kw": kwargs})
                for label, plugin in ((EMPTY, empty), (OURS, ours))
            }
            best = dict.fromkeys(timers, float("inf"))
            for _ in range(REPEATS):  # alternating, so a busy moment of the machine hits both
                for label, timer in timers.items():
                    best[label] = min(best[label], timer.timeit(number))
            us = {label: t / number * 1e6 for label, t in best.items()}
            for label in total:
                total[label] += us[label]
            rows.append([f"{start} -> {finish}", what, us[OURS], us[EMPTY], ratio(us[OURS], us[EMPTY])])
        rows.append(
            ["one task, all of the above", "", total[OURS], total[EMPTY], ratio(total[OURS], total[EMPTY])]
        )
        s.http_server.stop()
        return rows


def run_engine(s: Any, n: int, tag: str) -> tuple[float, int]:
    """n independent no-op tasks of one client through `s`'s own code: submitted at once, each finished
    by its worker's message, released. Returns this thread's CPU seconds and the transitions made."""
    from dask._task_spec import Task

    keys = [f"{tag}-{i}" for i in range(n)]
    transitions, client = s.transition_counter, "bench-client"
    gc.collect()
    gc.disable()  # as timeit does: a collection's cost depends on the whole heap, not on this run
    t = time.thread_time()
    recs: dict[Any, str] = {}
    for i, key in enumerate(keys):
        ts = s.new_task(key, Task(key, noop), "released")
        ts.priority = (0, i)
        recs[key] = "waiting"
    s.client_desires_keys(keys, client)
    s.transitions(recs, stimulus_id=f"{tag}-submit")
    done = 0
    while running := [(ts.key, ts.run_id, ws.address) for ws in s.workers.values() for ts in ws.processing]:
        for key, run_id, address in running:
            s.handle_task_finished(
                key,
                address,
                f"{tag}-done",
                run_id=run_id,
                metadata={},
                nbytes=28,
                type=b"int",
                typename="int",
                thread=1,
                startstops=({"action": "compute", "start": 0, "stop": 1e-4},),
            )
            done += 1
    s.client_releases_keys(keys, client, stimulus_id=f"{tag}-release")
    cpu = time.thread_time() - t
    gc.enable()
    assert done == n and not s.tasks, (done, n, len(s.tasks))
    return cpu, s.transition_counter - transitions


def engine_cost(n_tasks: int, rounds: int) -> tuple[dict[str, list[float]], float]:
    """Scheduler CPU seconds per task of each contender in each round (2 stand-in workers; the
    contenders' order alternates), and the transitions per task."""
    from distributed.scheduler import ClientState

    with own_loop() as loop:
        s = populated(loop, 2, 0)
        s.clients["bench-client"] = ClientState("bench-client")
        ours, empty = our_plugin(s), Empty()
        plugins = {BASE: (), EMPTY: (empty,), OURS: (ours,), TWO: (ours, empty)}
        run_engine(s, n_tasks, "warm-up")
        per_task: dict[str, list[float]] = {name: [] for name in plugins}
        transitions = 0
        for rnd in range(rounds):
            for i, name in enumerate(plugins if rnd % 2 == 0 else reversed(plugins)):
                for plugin in plugins[name]:
                    s.add_plugin(plugin, name=plugin.name)
                cpu, transitions = run_engine(s, n_tasks, f"r{rnd}-{i}")
                for plugin in plugins[name]:
                    s.remove_plugin(name=plugin.name)
                per_task[name].append(cpu / n_tasks)
        s.http_server.stop()
        return per_task, transitions / n_tasks


def e2e_cost(n_tasks: int, pairs: int) -> dict[str, list[float]]:
    """Wall seconds per no-op task through an in-process LocalCluster, without and with our plugin."""
    from distributed import Client, LocalCluster

    async def go() -> dict[str, list[float]]:
        async with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=False, asynchronous=True, dashboard_address=None
            ) as cluster,
            Client(cluster, asynchronous=True) as client,
        ):
            s = cluster.scheduler
            ours = our_plugin(s)

            async def run() -> float:
                gc.collect()
                t = time.perf_counter()
                futures = client.map(noop, range(n_tasks), pure=False)
                await client.gather(futures)
                del futures
                while s.tasks:
                    await asyncio.sleep(0.001)
                return (time.perf_counter() - t) / n_tasks

            await run()  # warm-up
            per_task: dict[str, list[float]] = {BASE: [], OURS: []}
            for pair in range(pairs):
                for name in (BASE, OURS) if pair % 2 == 0 else (OURS, BASE):
                    if name == OURS:
                        s.add_plugin(ours, name=Activity.name)
                    per_task[name].append(await run())
                    if name == OURS:
                        s.remove_plugin(name=Activity.name)
            return per_task

    return asyncio.run(go())


def paired(per_task: dict[str, list[float]], transitions: float | None = None) -> list[list[Any]]:
    """One row per contender: best and median per task; the ratio of the bests to the baseline's (the
    machine's other work only ever adds time), and the median and middle half of the ratios to the
    baseline run of the same round (pairing cancels drift; the middle half is the noise)."""
    base = min(per_task[BASE])
    rows = []
    for name, times in per_task.items():
        ratios = [t / b for t, b in zip(times, per_task[BASE], strict=True)]
        best = min(times)
        row = [name, best * 1e6, statistics.median(times) * 1e6, best / base, statistics.median(ratios)]
        row.append(spread(ratios))
        if transitions:
            row.append((best - base) * 1e6 / transitions)
        rows.append(row)
    return rows


def plugin_section(out: Tee, engine_tasks: int, rounds: int, e2e_tasks: int, pairs: int, number: int) -> None:
    out(
        "\nplugin cost: the preload's one scheduler plugin (activity.py), called on every transition;\n"
        f"baseline: the scheduler with {BASE} (work stealing, shuffle) only\n"
    )
    out(f"hook called directly, best of {REPEATS} x {number} calls (10 workers, 200 tasks)\n")
    out(table(["transition", "our hook", "ours us", "no-op hook us", "ours/no-op"], hook_cost(number)))
    per_task, transitions = engine_cost(engine_tasks, rounds)
    out(
        f"\nengine: {rounds} rounds of {engine_tasks} no-op tasks per contender through the scheduler's own "
        f"code, 2 stand-in workers, no comms, {transitions:.1f} transitions per task; scheduler CPU\n"
    )
    headers = ["contender", "best us/task", "median us/task", "best/baseline", "paired ratio", "middle half"]
    out(table([*headers, "extra us per transition (best)"], paired(per_task, transitions)))
    if e2e_tasks:
        e2e = e2e_cost(e2e_tasks, pairs)
        out(
            f"\nend to end: {pairs} pairs of runs of {e2e_tasks} no-op tasks, in-process LocalCluster "
            "(2 workers x 1 thread, inproc comms); wall time\n"
        )
        out(table(headers, paired(e2e)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="10,100,1000", help="worker counts [10,100,1000]")
    ap.add_argument("--tasks", default="1000,10000,100000", help="queued task counts [1000,10000,100000]")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of repetitions per measurement [1]")
    ap.add_argument("--quick", action="store_true", help="10,100 workers x 1k,10k tasks, short budget")
    ap.add_argument(
        "--plugin-tasks", type=int, help="tasks per engine run [2000 x budget]; 0: no plugin cost"
    )
    ap.add_argument("--plugin-rounds", type=int, help="interleaved engine rounds [30 x budget, at least 3]")
    ap.add_argument("--e2e-tasks", type=int, help="tasks per end-to-end run [1000 x budget]; 0: skip it")
    ap.add_argument("--e2e-pairs", type=int, help="interleaved end-to-end pairs [10 x budget, at least 2]")
    ap.add_argument("--look-pods", default="100,1000", help="look cost: pods on the local server; '': skip")
    ap.add_argument(
        "--look-idle", type=float, default=60.0, help="look cost: idle seconds per contender [60]"
    )
    ap.add_argument(
        "--look-real", type=int, default=200, help="look cost: pods on the real control plane; 0: skip"
    )
    ap.add_argument("--write-results", action="store_true", help="replace this section of RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.workers, args.tasks, args.budget = "10,100", "1000,10000", 0.2
        args.look_pods, args.look_idle, args.look_real = "100", 3.0, 0
    budget = min(args.budget, 1.0)  # the plugin cost's sizes follow the budget, so a tiny run stays tiny
    plugin_tasks = args.plugin_tasks if args.plugin_tasks is not None else max(100, round(2000 * budget))
    rounds = args.plugin_rounds or max(3, round(30 * budget))
    e2e_tasks = args.e2e_tasks if args.e2e_tasks is not None else max(50, round(1000 * budget))
    pairs = args.e2e_pairs or max(2, round(10 * budget))
    logging.getLogger("distributed").setLevel(logging.ERROR)
    logging.getLogger("dask_adaptive").setLevel(logging.WARNING)
    workers = [int(x) for x in args.workers.split(",")]
    tasks = [int(x) for x in args.tasks.split(",")] + [0]
    out = Tee()
    started = time.perf_counter()
    out(f"load average at start: {load()}")
    out(
        "decision_cost: real distributed.Scheduler state, in-process stand-in workers (1 thread each); "
        "median per call\n"
    )
    rows, results = [], {}
    for w in workers:
        for n in tasks:
            r = measure(w, n, args.budget)
            results[(w, n)] = r
            path = "tick (busy)" if n else "scale-down decision (idle)"
            rows.append(
                [
                    w,
                    n,
                    r["processing"],
                    r["queued"],
                    path,
                    r["decision"],
                    r["tick"] * 1e6,
                    r["baseline"] * 1e6,
                    ratio(r["tick"], r["baseline"]),
                ]
            )
            print(
                f"  {w} workers, {n} tasks: {r['tick'] * 1e6:.0f} us (baseline {r['baseline'] * 1e6:.0f} us)",
                flush=True,
            )
    headers = [
        "workers",
        "tasks",
        "processing",
        "queued",
        "path",
        "decision",
        "ours us",
        "adaptive_target us",
        "ours/baseline",
    ]
    out(table(headers, rows))
    growth = []
    for n in tasks:
        for a, b in itertools.pairwise(workers):
            ta, tb = results[(a, n)]["tick"], results[(b, n)]["tick"]
            growth.append([n, f"{a} -> {b}", b / a, tb / ta, (tb / ta) / (b / a)])
    out("\ngrowth with workers (linear = time factor equal to worker factor: 1.0 in the last column)\n")
    out(table(["tasks", "workers", "worker factor", "time factor", "time/worker factor"], growth))
    looks = look_cost.run(
        out, [int(x) for x in args.look_pods.split(",") if x], args.look_idle, args.look_real
    )
    big = results.get((max(workers), max(tasks)))
    if big:
        line = f"\nat {max(workers)} workers / {max(tasks)} tasks: {big['tick'] * 1e3:.2f} ms per decision"
        before, after = (
            looks.get(("local fake", max(workers), "list")),
            looks.get(("local fake", max(workers), "watch")),
        )
        if before and after:  # the look's own block on the loop (the pods' list and parse), before and after
            tick, was, now = big["tick"] * 1e3, before[look_cost.BLOCK], after[look_cost.BLOCK]
            line += (
                f" + the look's block: {was:.1f} ms before (a LIST per look), {now:.2f} ms with the watch"
                f" cache = {tick + was:.1f} ms before, {tick + now:.2f} ms after"
            )
        out(line + " (goal: well under 10 ms)")
    if plugin_tasks:
        number = max(1000, round(100_000 * budget))
        plugin_section(out, plugin_tasks, rounds, e2e_tasks, pairs, number)
    out(f"took {time.perf_counter() - started:.0f} s")
    if args.write_results:
        cmd = "python benchmarks/decision_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section("decision_cost", "Decision cost", cmd.strip(), out.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
