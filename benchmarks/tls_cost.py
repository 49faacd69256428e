"""TLS cost: what does mutual TLS on every Dask connection cost the burst of adaptive_efficiency.py?

Two contenders, identical but for TLS: `dask scheduler --preload dask_adaptive.preload --backend
local` (a subprocess, as deployed) from 0 workers up to M single-threaded workers, either plain
(`tcp://`) or `--protocol tls` with the pods' environment (`DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION`
and a certificate for every role from one CA, ECDSA P-256 as testbed/pki.py makes them); the local
workers inherit it, the client presents a certificate of the same CA.

Workload: adaptive_efficiency.py's `burst` (its `build`: leaves of "square + sleep" and a pairwise tree
of additions), from 0 workers, so scaling up (each worker's TLS handshakes included) is in the
makespan. Then, on the workers still up, `tiny`: many no-op tasks, where the scheduler-worker traffic
and not sleeping is the work, the case most sensitive to encryption of small messages. Each repeat runs
both contenders back to back; each mode runs first in half the pairs, in a shuffled (seeded) order.

Then `transfer`: data, not messages. One fixed pool of --transfer-blocks workers per mode (a scheduler of
that mode with min = max workers, so no scaling), both up at once; a square float64 array of
--transfer-mib MiB in row blocks is rechunked to column blocks (dask's task rechunk: every column block
takes a piece of several MiB from every row block, so nearly all the array crosses between worker
processes over the pool's protocol) and summed. Rounds alternate between the pools (each first in half the
pairs), so the two halves of a pair are seconds apart and the machine's load drift (it is shared) cancels.
The bytes the workers sent are counted (their `transfer_outgoing_bytes_total`).

The ratio of a measure is tls/plain per pair, summarised by the geometric mean of the pair ratios and a
bootstrap 95% interval over pairs (benchmarks/_intervals.py). A difference is claimed only where the
interval excludes 1. Goal: burst makespan ratio <= 1.05 (upper bound). The 1-minute load average is
printed with every run: a difference between pairs minutes apart on an overloaded machine is noise.

Usage: .venv/bin/python benchmarks/tls_cost.py [--repeats N] [--seed S] [--quick] [--write-results] [--help]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH, ROOT, Tee, load, table, write_section
from _intervals import pair_ratio_interval, verdict
from adaptive_efficiency import build

from testbed import pki
from testbed.dask.procs import scheduler as preload_scheduler

# the burst's task functions are pickled by reference to adaptive_efficiency: put it on the path of
# the scheduler and of the workers it starts (they inherit its environment)
PATHS = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)])}
GOAL = 1.05
MEASURES = {
    "burst": "burst makespan",
    "first_worker": "first worker",
    "tiny": "tiny tasks",
    "transfer": "transfer (rechunk)",
}
MODES = ("plain", "tls")


@dataclass
class Run:
    mode: str
    rep: int
    order: int = 0  # 1 if it ran first in its pair, 2 if second
    load: str = ""  # 1-minute load average when it ended (the machine is shared)
    burst: float = 0.0  # makespan from submit, 0 workers at the start
    first_worker: float = 0.0  # seconds from submit until a worker was connected
    tiny: float = 0.0  # makespan of the tiny tasks on the workers left
    workers: int = 0  # workers connected at the end of the burst
    tasks: int = 0  # distinct task keys executed in the burst
    twice: int = 0  # burst tasks executed more than once


@dataclass
class Pair:
    """One transfer round on each pool, back to back."""

    rep: int
    first: str  # the mode that ran first
    seconds: dict[str, float]  # mode -> makespan of the rechunk and sum
    moved: dict[str, float]  # mode -> MiB the workers sent in it
    load: str = ""


def noop(i: int) -> int:
    return i


def sent_bytes(dask_worker: Any) -> int:
    return dask_worker.transfer_outgoing_bytes_total


def rechunk_sum(mib: float, blocks: int) -> tuple[Any, int]:
    """The graph (a square float64 array of about `mib` MiB, row blocks to column blocks, summed) and n*n."""
    import dask.array as da

    n = max(blocks, int(math.sqrt(mib * 2**20 / 8)) // blocks * blocks)
    x = da.random.default_rng(0).random((n, n), chunks=(n // blocks, n))  # row blocks
    return x.rechunk((n, n // blocks), method="tasks").sum(), n * n  # column blocks take a piece of each


def balanced_orders(n: int, rng: random.Random) -> list[tuple[str, ...]]:
    """Orders of n pairs: each mode first in half of them (the odd one drawn at random), shuffled, so a
    first-or-second effect cannot lean on one mode (a plain draw per pair can give 13 of 15 one way)."""
    firsts = [MODES[i % 2] for i in range(n - n % 2)] + [rng.choice(MODES)] * (n % 2)
    rng.shuffle(firsts)
    return [(f, *(m for m in MODES if m != f)) for f in firsts]


def transfer_round(client: Any, mib: int, blocks: int) -> tuple[float, float]:
    """(seconds, MiB the workers sent) of one rechunk and sum, checked."""
    total, cells = rechunk_sum(mib, blocks)
    before = sum(client.run(sent_bytes).values())
    t0 = time.monotonic()
    value = client.compute(total).result(timeout=600)
    seconds = time.monotonic() - t0
    moved = (sum(client.run(sent_bytes).values()) - before) / 2**20
    if abs(value / cells - 0.5) > 0.01:  # uniform [0, 1): a lost or doubled block moves the mean
        raise SystemExit(f"transfer: the sum {value} is not about {cells / 2}")
    return seconds, moved


def transfer_pairs(args: argparse.Namespace, orders: random.Random) -> list[Pair]:
    """Both fixed pools up at once (min = max = blocks workers), one small untimed round each to warm them,
    then repeats x rounds pairs of timed rounds (balanced_orders)."""
    from distributed import Client

    blocks, pairs = args.transfer_blocks, []
    with tempfile.TemporaryDirectory(prefix="bench-tls-transfer-") as tmp, ExitStack() as stack:
        clients = {}
        for mode in MODES:
            workdir = Path(tmp, mode)
            workdir.mkdir()
            address, security = stack.enter_context(contender(mode, blocks, workdir, minimum=blocks))
            clients[mode] = stack.enter_context(Client(address, security=security, timeout="60s"))
        for mode, client in clients.items():
            client.wait_for_workers(blocks, timeout=300)
            client.compute(rechunk_sum(1, blocks)[0]).result(timeout=120)
            workers = len(client.scheduler_info(n_workers=-1)["workers"])
            if workers != blocks:
                raise SystemExit(f"{mode} transfer pool has {workers} workers, not {blocks}")
        for i, order in enumerate(balanced_orders(args.repeats * args.transfer_rounds, orders)):
            pair = Pair(i // args.transfer_rounds, order[0], {}, {})
            for mode in order:
                pair.seconds[mode], pair.moved[mode] = transfer_round(
                    clients[mode], args.transfer_mib, blocks
                )
            pair.load = f"{os.getloadavg()[0]:.2f}"
            plain, tls = pair.seconds["plain"], pair.seconds["tls"]
            print(
                f"  transfer #{i + 1}: plain {plain:.2f} s, tls {tls:.2f} s ({order[0]} first); load {load()}"
            )
            pairs.append(pair)
    return pairs


@contextmanager
def contender(mode: str, maximum: int, workdir: Path, minimum: int = 0) -> Iterator[tuple[str, Any]]:
    """Yield (address, client security) of a started preload scheduler, plain or TLS."""
    from distributed import Security

    options = ["--backend", "local", "--min-workers", str(minimum), "--max-workers", str(maximum)]
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


def run_one(mode: str, rep: int, args: argparse.Namespace) -> Run:
    from distributed import Client

    run = Run(mode, rep)
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        folder = Path(tmp, "executions")
        folder.mkdir()
        with (
            contender(mode, args.max_workers, Path(tmp)) as (address, security),
            Client(address, security=security, timeout="60s") as client,
        ):
            if mode == "tls" and not address.startswith("tls://"):
                raise SystemExit(f"tls contender listens on {address}")
            graph, expected = build(0, args.burst_leaves, args.seconds, str(folder))
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
            if args.tiny:
                t1 = time.monotonic()
                results = client.gather(client.map(noop, range(args.tiny), pure=False))
                run.tiny = time.monotonic() - t1
                if results != list(range(args.tiny)):
                    raise SystemExit(f"{mode}: the tiny tasks answered wrong")
        counts: dict[str, int] = {}
        for f in folder.iterdir():
            key = f.name.rsplit(".", 1)[0]
            counts[key] = counts.get(key, 0) + 1
        run.tasks = len(counts)
        run.twice = sum(1 for n in counts.values() if n > 1)
    return run


def report(runs: list[Run], pairs: list[Pair], out: Tee, args: argparse.Namespace, seed: int) -> float:
    """Print the runs, the transfer pairs, the medians and the pair-ratio intervals; returns the burst's
    upper bound."""
    tiny = args.tiny
    rows = [
        [
            r.rep + 1,
            r.order,
            r.mode,
            r.burst,
            r.first_worker,
            r.tiny if tiny else "-",
            r.workers,
            r.tasks,
            r.twice,
            r.load,
        ]
        for r in runs
    ]
    headers = ["rep", "order", "mode", "burst makespan s", "first worker s", f"{args.tiny} tiny tasks s"]
    out(table([*headers, "workers at end", "tasks", "twice", "load 1 min"], rows))
    by = {m: sorted((r for r in runs if r.mode == m), key=lambda r: r.rep) for m in MODES}
    series = {
        k: ([getattr(p, k) for p in by["plain"]], [getattr(t, k) for t in by["tls"]])
        for k in ("burst", "first_worker", "tiny")
        if k != "tiny" or args.tiny
    }
    if pairs:
        out(f"\ntransfer: {len(pairs)} pairs of rounds on the two pools, each mode first in half of them\n")
        rows = [
            [i + 1, p.first, p.seconds["plain"], p.seconds["tls"], p.seconds["tls"] / p.seconds["plain"],
             p.moved["plain"], p.moved["tls"], p.load]
            for i, p in enumerate(pairs)
        ]  # fmt: skip
        headers = [
            "pair",
            "first",
            "plain s",
            "tls s",
            "tls/plain",
            "plain MiB sent",
            "tls MiB sent",
            "load 1 min",
        ]
        out(table(headers, rows))
        series["transfer"] = ([p.seconds["plain"] for p in pairs], [p.seconds["tls"] for p in pairs])
    rng = random.Random(seed)
    summary, intervals = [], {}
    for k, (plain, tls) in series.items():
        iv = intervals[k] = pair_ratio_interval([t / p for p, t in zip(plain, tls, strict=True) if p], rng)
        row = [MEASURES[k], iv.pairs, statistics.median(plain), statistics.median(tls)]
        summary.append([*row, f"{iv.point:.3f}", f"{iv.low:.3f}-{iv.high:.3f}", verdict(iv)])
    out(f"\nratio = tls / plain per pair (seed {seed} for orders and resamples)\n")
    headers = ["measure", "pairs", "plain median s", "tls median s", "pair ratio (geo. mean)", "95% interval"]
    out(table([*headers, "tls is"], summary))
    burst = intervals["burst"]
    met = "met" if burst.high <= GOAL else "not shown"
    out(f"\nburst makespan ratio tls/plain {burst}: goal <= {GOAL} (95% upper bound) {met}")
    return burst.high


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-workers", type=int, default=8, help="M [8]")
    ap.add_argument("--seconds", type=float, default=1.0, help="sleep of a leaf task [1.0]")
    ap.add_argument("--burst-leaves", type=int, default=240, help="leaves of the burst [240: 30 s/worker]")
    ap.add_argument("--tiny", type=int, default=2000, help="no-op tasks after the burst, 0 for none [2000]")
    ap.add_argument("--transfer-mib", type=int, default=256, help="array of the transfer, 0 for none [256]")
    ap.add_argument("--transfer-blocks", type=int, default=8, help="row/column blocks of the transfer [8]")
    ap.add_argument("--transfer-rounds", type=int, default=3, help="transfer pairs per repeat [3]")
    ap.add_argument("--repeats", type=int, default=5, help="pairs of runs (balanced orders) [5]")
    ap.add_argument("--seed", type=int, default=None, help="orders and bootstrap resamples [random, printed]")
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument("--write-results", action="store_true", help="replace this section of RESULTS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.max_workers, args.seconds, args.burst_leaves, args.tiny, args.repeats = 4, 0.5, 40, 500, 3
        args.transfer_mib = 64
    if args.repeats < 1 or args.transfer_mib < 0 or args.transfer_blocks < 2 or args.transfer_rounds < 1:
        ap.error(
            f"--repeats {args.repeats} and --transfer-rounds {args.transfer_rounds} must be >= 1, "
            f"--transfer-mib {args.transfer_mib} >= 0, --transfer-blocks {args.transfer_blocks} >= 2"
        )
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    orders = random.Random(seed)
    out = Tee()
    started = time.monotonic()
    out(f"load average at start: {load()}")
    out(
        f"tls_cost: burst of {args.burst_leaves} leaves x {args.seconds:g} s from 0 workers, at most "
        f"{args.max_workers} workers x 1 thread (local backend), then {args.tiny} no-op tasks, "
        f"{args.repeats} pairs plain/tls (each mode first in half, order shuffled; seed {seed}); then "
        f"{args.repeats * args.transfer_rounds} pairs of transfer rounds on two fixed pools of "
        f"{args.transfer_blocks} workers: a rechunk of "
        f"{args.transfer_mib} MiB from {args.transfer_blocks} row blocks to column blocks"
    )
    runs: list[Run] = []
    for rep, modes in enumerate(balanced_orders(args.repeats, orders)):
        for order, mode in enumerate(modes, start=1):
            r = run_one(mode, rep, args)
            r.order, r.load = order, f"{os.getloadavg()[0]:.2f}"
            print(
                f"  #{rep + 1} {mode:5} burst {r.burst:.2f} s (first worker {r.first_worker:.2f} s), "
                f"tiny {r.tiny:.2f} s, twice {r.twice}; load {load()}",
                flush=True,
            )
            runs.append(r)
    runs.sort(key=lambda r: (r.rep, r.order))
    pairs = transfer_pairs(args, orders) if args.transfer_mib else []
    report(runs, pairs, out, args, seed)
    out(f"load average at end: {load()}; took {time.monotonic() - started:.0f} s")
    if args.write_results:
        cmd = "python benchmarks/tls_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section("tls_cost", "TLS cost", cmd.strip(), out.text())
    return 1 if any(r.twice for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
