"""TLS cost: what does mutual TLS on every Dask connection cost the burst of adaptive_efficiency.py?

Two contenders, identical but for TLS: `dask scheduler --preload dask_adaptive.preload --backend
local` (a subprocess, as deployed) from 0 workers up to M single-threaded workers, either plain
(`tcp://`) or `--protocol tls` with the pods' environment (`DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION`
and a certificate for every role from one CA, ECDSA P-256 as testbed/pki.py makes them); the local
workers inherit it, the client presents a certificate of the same CA.

Workload: adaptive_efficiency.py's `burst` (its `build`: leaves of "square + sleep" and a pairwise tree
of additions), from 0 workers, so scaling up (each worker's TLS handshakes included) is in the
makespan. Then, on the workers still up, `tiny`: many no-op tasks, where the scheduler-worker traffic
and not sleeping is the work, the case most sensitive to encryption (an upper bound, not the goal).

Runs are interleaved (plain, tls, then tls, plain, ...) so drift in the machine's load hits both; the
ratio is tls/plain of the medians, and per interleaved pair. Goal: burst makespan ratio <= 1.05.

Usage: .venv/bin/python benchmarks/tls_cost.py [--repeats N] [--quick] [--write-results] [--help]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH, ROOT, Tee, load, table, write_section
from adaptive_efficiency import build

from testbed import pki
from testbed.dask.procs import scheduler as preload_scheduler

# the burst's task functions are pickled by reference to adaptive_efficiency: put it on the path of
# the scheduler and of the workers it starts (they inherit its environment)
PATHS = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])}
GOAL = 1.05
MEASURES = ("burst", "first_worker", "tiny")
MODES = ("plain", "tls")


@dataclass
class Run:
    mode: str
    rep: int
    burst: float = 0.0  # makespan from submit, 0 workers at the start
    first_worker: float = 0.0  # seconds from submit until a worker was connected
    tiny: float = 0.0  # makespan of the tiny tasks on the workers left
    workers: int = 0  # workers connected at the end of the burst
    tasks: int = 0  # distinct task keys executed in the burst
    twice: int = 0  # burst tasks executed more than once


def noop(i: int) -> int:
    return i


@contextmanager
def contender(mode: str, maximum: int, workdir: Path) -> Iterator[tuple[str, Any]]:
    """Yield (address, client security) of a started preload scheduler, plain or TLS."""
    from distributed import Security

    options = ["--backend", "local", "--min-workers", "0", "--max-workers", str(maximum)]
    if mode == "plain":
        with preload_scheduler(workdir, *options, extra_env=PATHS) as s:
            yield s.address, Security()
        return
    ca = pki.make_ca("bench-ca")
    files = pki.write_tls_files(workdir / "tls", ca, pki.make_leaf(ca, "dask"))
    with preload_scheduler(workdir, "--protocol", "tls", *options, extra_env=PATHS | files.env()) as s:
        yield s.address, Security(**client_kwargs(files))


def client_kwargs(files: pki.TlsFiles) -> dict[str, Any]:
    return {
        "tls_ca_file": str(files.ca_file),
        "tls_client_cert": str(files.cert),
        "tls_client_key": str(files.key),
        "require_encryption": True,
    }


def run_one(mode: str, rep: int, maximum: int, leaves: int, seconds: float, tiny: int) -> Run:
    from distributed import Client

    run = Run(mode, rep)
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        folder = Path(tmp, "executions")
        folder.mkdir()
        with (
            contender(mode, maximum, Path(tmp)) as (address, security),
            Client(address, security=security, timeout="60s") as client,
        ):
            if mode == "tls" and not address.startswith("tls://"):
                raise SystemExit(f"tls contender listens on {address}")
            graph, expected = build(0, leaves, seconds, str(folder))
            t0 = time.monotonic()
            future = client.compute(graph)
            while not client.scheduler_info()["workers"] and not future.done():
                time.sleep(0.05)
            run.first_worker = time.monotonic() - t0
            result = future.result(timeout=1800)
            run.burst = time.monotonic() - t0
            if result != expected:
                raise SystemExit(f"{mode}: the burst answered {result}, expected {expected}")
            del future
            run.workers = len(client.scheduler_info(n_workers=-1)["workers"])
            if tiny:
                t1 = time.monotonic()
                results = client.gather(client.map(noop, range(tiny), pure=False))
                run.tiny = time.monotonic() - t1
                if results != list(range(tiny)):
                    raise SystemExit(f"{mode}: the tiny tasks answered wrong")
        counts: dict[str, int] = {}
        for f in folder.iterdir():
            key = f.name.rsplit(".", 1)[0]
            counts[key] = counts.get(key, 0) + 1
        run.tasks = len(counts)
        run.twice = sum(1 for n in counts.values() if n > 1)
    return run


def spread(xs: list[float]) -> str:
    return f"{min(xs):.2f}-{max(xs):.2f}" if xs else "-"


def report(runs: list[Run], out: Tee, tiny: int) -> float:
    """Print the runs, the medians and the ratios; returns the burst makespan ratio tls/plain."""
    rows = [
        [r.rep + 1, r.mode, r.burst, r.first_worker, r.tiny if tiny else "-", r.workers, r.tasks, r.twice]
        for r in runs
    ]
    headers = ["rep", "mode", "burst makespan s", "first worker s", f"{tiny} tiny tasks s"]
    out(table([*headers, "workers at end", "tasks", "twice"], rows))
    by = {m: [r for r in runs if r.mode == m] for m in MODES}
    med = {
        m: {k: statistics.median(getattr(r, k) for r in by[m]) for k in ("burst", "first_worker", "tiny")}
        for m in MODES
    }
    pairs = {
        k: [
            getattr(t, k) / getattr(p, k)
            for p, t in zip(by["plain"], by["tls"], strict=True)
            if getattr(p, k)
        ]
        for k in ("burst", "first_worker", "tiny")
    }
    summary = []
    for k, label in (("burst", "burst makespan"), ("first_worker", "first worker"), ("tiny", "tiny tasks")):
        if k == "tiny" and not tiny:
            continue
        plain, tls = med["plain"][k], med["tls"][k]
        summary.append([label, plain, tls, tls / plain if plain else "-", spread(pairs[k])])
    out(f"\nmedians over {len(by['plain'])} interleaved pairs (ratio = tls / plain)\n")
    out(table(["measure", "plain s", "tls s", "ratio of medians", "pair ratios min-max"], summary))
    burst_ratio = med["tls"]["burst"] / med["plain"]["burst"]
    verdict = "met" if burst_ratio <= GOAL else "NOT met"
    out(f"\nburst makespan ratio tls/plain {burst_ratio:.3f}: goal <= {GOAL} {verdict}")
    return burst_ratio


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-workers", type=int, default=8, help="M [8]")
    ap.add_argument("--seconds", type=float, default=1.0, help="sleep of a leaf task [1.0]")
    ap.add_argument("--burst-leaves", type=int, default=240, help="leaves of the burst [240: 30 s/worker]")
    ap.add_argument("--tiny", type=int, default=2000, help="no-op tasks after the burst, 0 for none [2000]")
    ap.add_argument("--repeats", type=int, default=4, help="interleaved pairs of runs [4]")
    ap.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    ap.add_argument("--write-results", action="store_true", help="replace this section of RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.max_workers, args.seconds, args.burst_leaves, args.tiny, args.repeats = 4, 0.5, 40, 500, 2
    out = Tee()
    started = time.monotonic()
    out(f"load average at start: {load()}")
    out(
        f"tls_cost: burst of {args.burst_leaves} leaves x {args.seconds:g} s from 0 workers, at most "
        f"{args.max_workers} workers x 1 thread (local backend), then {args.tiny} no-op tasks; "
        f"{args.repeats} interleaved pairs plain/tls"
    )
    runs: list[Run] = []
    for rep in range(args.repeats):
        for mode in MODES if rep % 2 == 0 else reversed(MODES):
            r = run_one(mode, rep, args.max_workers, args.burst_leaves, args.seconds, args.tiny)
            print(
                f"  #{rep + 1} {mode:5} burst {r.burst:.2f} s (first worker {r.first_worker:.2f} s), "
                f"tiny {r.tiny:.2f} s, twice {r.twice}; load {load()}",
                flush=True,
            )
            runs.append(r)
    runs.sort(key=lambda r: (r.rep, MODES.index(r.mode)))
    report(runs, out, args.tiny)
    out(f"took {time.monotonic() - started:.0f} s")
    if args.write_results:
        cmd = "python benchmarks/tls_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section("tls_cost", "TLS cost", cmd.strip(), out.text())
    return 1 if any(r.twice for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
