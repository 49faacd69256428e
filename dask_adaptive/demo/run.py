"""The demo's script: start a real scheduler with the preload, submit, watch, fetch, plot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distributed import Client

from dask_adaptive.demo.plot import plot
from dask_adaptive.demo.probe import DoneCounter, probe
from dask_adaptive.demo.view import View
from dask_adaptive.demo.workload import build


@dataclass(frozen=True)
class DemoOptions:
    leaves: int = 120
    seconds: float = 1.0
    max_workers: int = 8
    scale_down_delay: str = "10s"
    interval: str = "500ms"
    output: str = "dask-adaptive-demo.png"
    timeout: float = 600.0
    live: bool | None = None


def start_scheduler(opts: DemoOptions, workdir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`dask scheduler --preload dask_adaptive.preload --backend local ...`, exactly as deployed."""
    sfile, log = workdir / "scheduler.json", workdir / "scheduler.log"
    cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(sfile)]
    cmd += ["--preload", "dask_adaptive.preload", "--backend", "local", "--min-workers", "0"]
    cmd += ["--max-workers", str(opts.max_workers), "--scale-down-delay", opts.scale_down_delay]
    cmd += ["--interval", opts.interval]
    env = dict(os.environ)
    # importable by the scheduler even when the demo runs from a source checkout, not an install
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    deadline = time.monotonic() + 60
    while not sfile.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the scheduler did not start; see {log}:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    while True:
        try:
            return process, json.loads(sfile.read_text())["address"], log
        except (ValueError, KeyError):
            time.sleep(0.1)


def stop_scheduler(process: subprocess.Popen[bytes]) -> None:
    # SIGTERM: the scheduler's teardown stops the local workers it started
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run(opts: DemoOptions) -> int:
    graph, expected, total = build(opts.leaves, opts.seconds)
    samples: list[tuple[float, dict[str, Any]]] = []
    marks: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dask-adaptive-demo-") as tmp:
        process, address, log = start_scheduler(opts, Path(tmp))
        try:
            with Client(address, timeout=30) as client, View(total, opts.max_workers, opts.live) as view:
                client.register_plugin(DoneCounter())
                view.say(f"scheduler {address} (log {log}); 0 workers; submitting {total} tasks")
                t0 = time.monotonic()
                answer_future = client.compute(graph)
                deadline = t0 + opts.timeout

                def sample(phase: str) -> dict[str, Any]:
                    s = client.run_on_scheduler(probe)
                    now = time.monotonic() - t0
                    samples.append((now, s))
                    view.update(now, phase, s)
                    if time.monotonic() > deadline:
                        raise SystemExit(f"demo timed out after {opts.timeout:.0f}s; scheduler log {log}")
                    return s

                while not answer_future.done():
                    s = sample("computing")
                    if s["requested"] and "first request" not in marks:
                        marks["first request"] = samples[-1][0]
                    if s["running"] and "first worker" not in marks:
                        marks["first worker"] = samples[-1][0]
                    time.sleep(0.25)
                marks["work done"] = time.monotonic() - t0
                view.say(
                    f"work done after {marks['work done']:.1f}s; idle workers go after the scale-down delay"
                )
                # scale-down: every worker goes except the one holding the final answer
                while True:
                    s = sample("scaling down")
                    if s["running"] <= 1 and s["requested"] <= 1 and s["in_flight"] == 0:
                        break
                    time.sleep(0.25)
                marks["scaled down"] = time.monotonic() - t0
                for _ in range(8):  # show the steady state for a moment
                    sample("holding the answer")
                    time.sleep(0.25)
                answer = answer_future.result()
                last = samples[-1][1]
                view.say(
                    f"answer {answer} (expected {expected}) fetched from the last worker; "
                    f"tasks {last['done']}/{total}, recomputed {last['recomputed']}"
                )
                peak = max(x[1]["running"] for x in samples)
                view.say(
                    "timeline: "
                    + ", ".join(f"{label} {at:.1f}s" for label, at in marks.items())
                    + f"; peak {peak} workers"
                )
                ok = answer == expected and last["recomputed"] == 0
        finally:
            stop_scheduler(process)
    path = plot(samples, marks, os.path.abspath(opts.output))
    print(f"plot written to {path}", flush=True)
    return 0 if ok else 1
