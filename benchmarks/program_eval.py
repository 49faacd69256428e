"""How long does evaluating the Pulumi program take? (prod stack, under mocks; goal: under 5 s)

Measurements, each the median of N runs:
- cold: a fresh interpreter per run, as every `pulumi preview/up` starts one (imports included), with
  compiled bytecode cached (as after a pip install; kept in a private PYTHONPYCACHEPREFIX so the venv is
  not touched); baseline = the same interpreter running an empty program under the same mocks.
- cold, no bytecode (--uncached): the same with PYTHONDONTWRITEBYTECODE=1, so the 1+ MB provider
  modules are recompiled on every run (what this machine's environment does by default).
- warm: in one process after a warm-up (the program's own cost, imports excluded);
  baseline = the dev stack.

Usage: .venv/bin/python benchmarks/program_eval.py [--runs 5] [--uncached]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402

from testbed.infra.harness import install, run_graph, run_stack  # noqa: E402

_CHILD = """
import asyncio, json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from testbed.infra import harness
asyncio.set_event_loop(asyncio.new_event_loop())
if sys.argv[2] == "--noop":
    mocks, monitor = harness.install(stack="noop")
    graph = harness.run_graph(lambda: None, mocks, monitor)
else:
    graph = harness.run_stack(sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t0, "resources": len(graph.nodes)}))
"""


def child_env(pycache: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def cold(target: str, runs: int, pycache: str | None) -> tuple[float, int]:
    samples, count = [], 0
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(ROOT), target],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=child_env(pycache),
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        samples.append(result["seconds"])
        count = result["resources"]
    return statistics.median(samples), count


def warm(stack: str, runs: int) -> tuple[float, int]:
    samples, count = [], 0
    for _ in range(runs + 1):  # the first run pays the imports; dropped
        asyncio.set_event_loop(asyncio.new_event_loop())
        start = time.perf_counter()
        graph = run_stack(stack)
        samples.append(time.perf_counter() - start)
        count = len(graph.nodes)
        pulumi.runtime.set_all_config({})
        pulumi.runtime.reset_options()
    return statistics.median(samples[1:]), count


def warm_noop(runs: int) -> float:
    samples = []
    for _ in range(runs):
        asyncio.set_event_loop(asyncio.new_event_loop())
        start = time.perf_counter()
        mocks, monitor = install(stack="noop")
        run_graph(lambda: None, mocks, monitor)
        samples.append(time.perf_counter() - start)
        pulumi.runtime.reset_options()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--uncached", action="store_true", help="also measure cold runs without bytecode")
    args = parser.parse_args()
    runs = args.runs

    with tempfile.TemporaryDirectory(prefix="program-eval-pycache-") as pycache:
        cold("prod", 1, pycache)  # compile once into the private cache
        prod_cold, prod_count = cold("prod", runs, pycache)
        noop_cold, _ = cold("--noop", runs, pycache)
    prod_warm, _ = warm("prod", runs)
    dev_warm, dev_count = warm("dev", runs)
    noop_warm = warm_noop(runs)

    print(f"program_eval: median of {runs} runs; prod stack = {prod_count} resources, dev = {dev_count}")
    rows = [
        ("cold prod", prod_cold, "empty program", noop_cold),
        ("warm prod", prod_warm, "dev stack", dev_warm),
    ]
    if args.uncached:
        prod_raw, _ = cold("prod", runs, None)
        noop_raw, _ = cold("--noop", runs, None)
        rows.append(("cold prod, no bytecode", prod_raw, "empty program, no bytecode", noop_raw))
    for label, seconds, base_label, base in rows:
        ratio = seconds / base
        print(
            f"  {label:24s} {seconds:6.2f} s | baseline {base_label:28s} {base:6.2f} s | ratio {ratio:6.2f}x"
        )
    print(f"  warm empty program under mocks: {noop_warm:.3f} s")
    print(f"  goal (cold prod < 5 s): {'met' if prod_cold < 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
