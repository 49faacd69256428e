"""Look cost: what one look of the kubernetes backend costs the scheduler, list-per-look vs watch cache.

A look (`KubernetesBackend.observe`, once per controller interval, 1 s by default) needs every worker
pod. Contenders, same backend code, same run:
- `list` (the baseline, the backend before the cache: `watch=False`): one LIST of the worker pods per
  look, parsed on the event loop;
- `watch` (the shipped default): the pods listed once in pages, then watched with bookmarks; a look
  reads memory.

Measured per look: the event loop's longest synchronous stretch while the look runs (every callback
the loop runs is timed: `asyncio.Handle._run` wrapped), and the look's wall time; besides the looks:
the longest stretch the cache's own work (pages of its list, slices of events) took; and the API bytes
per idle minute (looks at the controller's interval, no pod changing), as sent on the wire (gzip where
the server compresses) and as decoded by the client.

Servers: (a) `testbed/kube/pod_api.py`, a local list+watch server in its own process, serving pods built
from the program's own worker Deployment (`dask_layer(...).worker_deployment()`) with what a 1.20
apiserver and kubelet add (managedFields, status, defaults); (b) `--real N`: the real 1.20.2 control
plane with N worker pods created through the API from the same Deployment's ReplicaSet (they need not
run), reached through the fault proxy, which counts the bytes.

Its table is part of decision_cost's section of RESULTS.md (`decision_cost.py --look-pods ...`).

Usage: .venv/bin/python benchmarks/look_cost.py [--pods 100,1000] [--idle-seconds 60] [--real 200]
       [--quick] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, Tee, load, ratio, table

from dask_adaptive.backends.kubernetes.api import KubeApi, RetryPolicy
from dask_adaptive.backends.kubernetes.backend import KubernetesBackend

INTERVAL = 1.0  # the controller's default interval (adaptive.yaml)
MODES = ("list", "watch")
# longer than the shipped 10 s per request: on a shared, loaded machine the baseline's 1000-pod LIST can
# take longer than that, and a benchmark that gives up measures nothing
PATIENT = RetryPolicy(budget=120.0, request_timeout=60.0)


@contextlib.contextmanager
def loop_blocks() -> Iterator[list[tuple[float, float, float]]]:
    """(start, wall seconds, CPU seconds of the loop's thread) of every callback the event loop runs:
    its synchronous stretches. On a loaded machine the wall time also holds time the thread waited for
    a core; the CPU time is the loop's own work."""
    spans: list[tuple[float, float, float]] = []
    original = asyncio.events.Handle._run

    def timed(self: asyncio.Handle) -> None:
        t, c = time.perf_counter(), time.thread_time()
        try:
            original(self)
        finally:
            spans.append((t, time.perf_counter() - t, time.thread_time() - c))

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]
    try:
        yield spans
    finally:
        asyncio.events.Handle._run = original  # type: ignore[method-assign]


def longest(spans: list[tuple[float, float, float]], start: float, end: float, cpu: bool = False) -> float:
    return max((s[2 if cpu else 1] for s in spans if start <= s[0] < end), default=0.0)


async def measure(
    mode: str,
    make_api: Callable[[], KubeApi],
    target: tuple[str, str, str],
    wire: Callable[[], int],
    idle_seconds: float,
) -> dict[str, Any]:
    """Start a backend (`mode`), then look every INTERVAL for `idle_seconds`; blocks and bytes."""
    namespace, deployment, selector = target
    api = make_api()
    backend = KubernetesBackend(
        namespace, deployment, selector, api=api, watch=mode == "watch",
        not_ready_timeout=30, settle_timeout=30, poll_interval=0.5,
    )  # fmt: skip
    with loop_blocks() as spans:
        t0 = time.perf_counter()
        await backend.start()
        started = time.perf_counter()
        obs = await backend.observe()  # warm
        look_blocks, look_cpu, look_walls, between = [], [], [], 0.0
        wire0, decoded0, t_idle = await asyncio.to_thread(wire), api.bytes_received, time.perf_counter()
        while time.perf_counter() - t_idle < idle_seconds:
            a = time.perf_counter()
            obs = await backend.observe()
            b = time.perf_counter()
            look_blocks.append(longest(spans, a, b))
            look_cpu.append(longest(spans, a, b, cpu=True))
            look_walls.append(b - a)
            await asyncio.sleep(max(0.0, INTERVAL - (b - a)))
            between = max(between, longest(spans, b, time.perf_counter()))
        elapsed = time.perf_counter() - t_idle
        wire1, decoded1 = await asyncio.to_thread(wire), api.bytes_received
    await backend.close()
    return {
        "units": len(obs.units),
        "start": started - t0,
        "start_block": longest(spans, t0, started),
        "block_max": max(look_blocks),
        "cpu_max": max(look_cpu),
        "block_median": statistics.median(look_blocks),
        "wall_median": statistics.median(look_walls),
        "between": between,
        "wire_per_min": (wire1 - wire0) / elapsed * 60,
        "decoded_per_min": (decoded1 - decoded0) / elapsed * 60,
        "looks": len(look_blocks),
    }


def worker_deployment(namespace: str) -> dict[str, Any]:
    from testbed.dask.kube_fixtures import dask_layer

    _, dep = dask_layer(namespace).worker_deployment()
    dep["metadata"]["namespace"] = namespace
    return dep


@contextlib.contextmanager
def local_server(deployment: dict[str, Any], pods: int, workdir: Path) -> Iterator[str]:
    dep_file = workdir / "deployment.json"
    dep_file.write_text(json.dumps(deployment))
    cmd = [
        sys.executable,
        "-m",
        "testbed.kube.pod_api",
        "--deployment-file",
        str(dep_file),
        "--pods",
        str(pods),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def server_bytes(url: str) -> int:
    with urllib.request.urlopen(f"{url}/control/stats", timeout=10) as r:
        return int(json.load(r)["sent"])


def rows_for(label: str, pods: int, results: dict[str, dict[str, Any]]) -> list[list[Any]]:
    base = results["list"]
    out = []
    for mode in MODES:
        r = results[mode]
        out.append([
            label, pods, mode, r["units"], r["looks"], r["block_max"] * 1e3, r["cpu_max"] * 1e3,
            r["block_median"] * 1e3,
            r["wall_median"] * 1e3, r["between"] * 1e3, r["start_block"] * 1e3,
            r["wire_per_min"] / 1e3, r["decoded_per_min"] / 1e3,
            ratio(r["block_max"], base["block_max"]), ratio(r["wire_per_min"], base["wire_per_min"]),
        ])  # fmt: skip
    return out


BLOCK = "largest block per look ms"
HEADERS = [
    "server", "pods", "mode", "units", "looks", BLOCK, "its CPU ms", "median block ms", "look wall ms",
    "largest block between looks ms", "largest block at start ms", "wire kB/idle min", "decoded kB/idle min",
    "block / list", "wire bytes / list",
]  # fmt: skip


def run_local(sizes: list[int], idle: float, out: Tee) -> list[list[Any]]:
    namespace = "work"
    dep = worker_deployment(namespace)
    selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        token = Path(tmp, "token")
        token.write_text("bench")
        for n in sizes:
            with local_server(dep, n, Path(tmp)) as url:
                target = (namespace, dep["metadata"]["name"], selector)
                results = {
                    mode: asyncio.run(
                        measure(
                            mode,
                            lambda url=url: KubeApi(url, token, policy=PATIENT),
                            target,
                            lambda url=url: server_bytes(url),
                            idle,
                        )
                    )
                    for mode in MODES
                }
            rows += rows_for("local fake", n, results)
            out(f"  local fake, {n} pods: done")
    return rows


def run(out: Tee, pods: list[int], idle: float, real: int) -> dict[tuple[str, int, str], dict[str, Any]]:
    """Measure and print the table; returns its rows (by column name) by (server, pods, mode)."""
    logging.getLogger("tornado.application").setLevel(logging.CRITICAL)  # a cancelled watch at shutdown
    out(
        f"look cost: a look of the kubernetes backend every {INTERVAL:.0f} s for {idle:.0f} s each, "
        "no pod changing;\n`list` = the baseline (the backend before the cache: a LIST per look), "
        "`watch` = the shipped pod cache\n"
    )
    rows = run_local(pods, idle, out)
    if real:
        from look_cost_real import run_real

        rows += run_real(real, idle, measure, rows_for, out)
    out(table(HEADERS, rows))
    for row in rows:
        v = dict(zip(HEADERS, row, strict=True))
        if v["mode"] == "watch":
            out(
                f"{v['server']}, {v['pods']} pods: largest block per look {v[BLOCK]:.2f} ms "
                f"({v['its CPU ms']:.2f} ms CPU; goal <= 5 ms), {v['block / list']:.4f} x the list's; "
                f"idle wire bytes {v['wire bytes / list']:.4f} x the list's (goal <= 0.1)"
            )
    return {(r[0], r[1], r[2]): dict(zip(HEADERS, r, strict=True)) for r in rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", default="100,1000", help="worker pods on the local server [100,1000]")
    ap.add_argument(
        "--idle-seconds", type=float, default=60.0, help="idle window of looks per contender [60]"
    )
    ap.add_argument("--real", type=int, default=0, help="also on the real 1.20.2 control plane, N pods [0]")
    ap.add_argument("--quick", action="store_true", help="100 pods, 5 s windows")
    args = ap.parse_args(argv)
    if args.quick:
        args.pods, args.idle_seconds = "100", 5.0
    out = Tee()
    out(f"load average at start: {load()}")
    run(out, [int(x) for x in args.pods.split(",")], args.idle_seconds, args.real)
    out(f"load average at end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
