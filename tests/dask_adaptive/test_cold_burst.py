"""Issue 13 §6 end to end: from zero workers, a burst asks for workers, not cores.

Scheduler.adaptive_target() divides its core estimate by the threads per worker only once workers
exist; the preload divides by `--worker-threads` (here also the threads the local backend starts its
workers with)
before the first one arrives. Real scheduler, real preload, real local worker processes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
from distributed import Client

from testbed.dask.procs import scheduler, wait_for

BURST = 12


def pause(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pytest.mark.parametrize("threads", [1, 4])
def test_cold_burst_asks_for_workers_not_cores(tmp_path: Path, threads: int):
    # unknown durations count 500ms each: 12 queued tasks / a 500ms target duration = 12 cores
    options = ["--backend", "local", "--min-workers", "0", "--max-workers", "16", "--interval", "200ms"]
    options += ["--target-duration", "500ms", "--worker-memory-limit", "512MiB"]
    options += ["--worker-threads", str(threads)]
    with scheduler(tmp_path, *options) as s, Client(s.address, timeout=30) as client:
        time.sleep(1)
        assert client.scheduler_info()["workers"] == {}, "starts with 0 workers"
        futures = client.map(pause, [1.0] * BURST, pure=False)  # one message: the controller sees all

        def scale_ups() -> list[int]:
            return [e["wanted"] for _, e in client.get_events("adaptive") if e["action"] == "ScaleUp"]

        first = wait_for(scale_ups, 60, "the first scale-up")[0]  # type: ignore[index]
        print(f"threads per worker {threads}: burst of {BURST} -> first scale-up asked for {first} workers")
        assert first == math.ceil(BURST / threads)
        assert f"decision=ScaleUp wanted={first} " in s.log_text()
        # the workers it got have the threads it divided by, and they do the work
        wait_for(lambda: client.scheduler_info()["workers"], 60, "a worker")
        assert {w["nthreads"] for w in client.scheduler_info()["workers"].values()} == {threads}
        assert client.gather(futures, errors="raise") == [1.0] * BURST
