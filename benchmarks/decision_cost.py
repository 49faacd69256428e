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

Usage: .venv/bin/python benchmarks/decision_cost.py [--quick] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Tee, load, ratio, table, write_section

from dask_adaptive.backends.base import Observation, Phase, RemovalReport, Unit
from dask_adaptive.config import resolve
from dask_adaptive.controller import Controller
from dask_adaptive.policy import History, ScaleDown, decide

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


def measure(n_workers: int, n_tasks: int, budget: float) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:

        async def build() -> Any:
            return populate(n_workers, n_tasks)

        t = time.perf_counter()
        s = loop.run_until_complete(build())
        built = time.perf_counter() - t
        names = [str(ws.name) for ws in s.workers.values()]
        settings = resolve({"backend": "local", "maximum": str(max(1, n_workers)), "scale_down_delay": "0s"})
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
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="10,100,1000", help="worker counts [10,100,1000]")
    ap.add_argument("--tasks", default="1000,10000,100000", help="queued task counts [1000,10000,100000]")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of repetitions per measurement [1]")
    ap.add_argument("--quick", action="store_true", help="10,100 workers x 1k,10k tasks, short budget")
    ap.add_argument("--write-results", action="store_true", help="replace this section of RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.workers, args.tasks, args.budget = "10,100", "1000,10000", 0.2
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
    big = results.get((max(workers), max(tasks)))
    if big:
        out(
            f"\nat {max(workers)} workers / {max(tasks)} tasks: {big['tick'] * 1e3:.2f} ms per decision "
            f"(goal: well under 10 ms)"
        )
    out(f"took {time.perf_counter() - started:.0f} s")
    if args.write_results:
        cmd = "python benchmarks/decision_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section("decision_cost", "Decision cost", cmd.strip(), out.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
