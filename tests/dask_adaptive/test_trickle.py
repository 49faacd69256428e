"""Issue 13 §5 end to end: a worker busy with a trickle of tasks is never retired as idle.

A client submits a short task, waits for it, pauses, and again, as a user's loop would. With the task
rhythm close to the controller's interval, every look at `adaptive_target()` can land in a pause; the
window must still see that the worker was working between looks. Once the trickle stops, the worker
is idle for real and must go after the delay as before (the control: retirement is observable here).
Real scheduler, real preload, real local worker process.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from distributed import Client

from testbed.dask.procs import scheduler, wait_for

TRICKLE_S = 20.0


def work(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def actions(client: Client, *names: str) -> list[dict]:
    return [e for _, e in client.get_events("adaptive") if e["action"] in names]


@pytest.mark.parametrize(
    ("task_s", "pause_s"),
    [
        (0.3, 0.2),  # the rhythm: one task per 500ms interval, ~60% busy
        (0.25, 0.2),  # a little faster than the interval
        (0.35, 0.2),  # a little slower
        (0.3, 0.7),  # one task per two intervals: whole intervals without a task in them
    ],
)
def test_a_trickle_keeps_its_worker(tmp_path: Path, task_s: float, pause_s: float):
    options = ["--backend", "local", "--min-workers", "0", "--max-workers", "2", "--interval", "500ms"]
    options += ["--scale-down-delay", "5s", "--worker-memory-limit", "512MiB"]
    with scheduler(tmp_path, *options) as s, Client(s.address, timeout=30) as client:
        assert client.submit(work, 0.0, pure=False).result(timeout=120) == 0.0  # the first worker
        [first] = [w["name"] for w in client.scheduler_info()["workers"].values()]
        waits = []
        start = time.monotonic()
        while time.monotonic() - start < TRICKLE_S:
            t = time.monotonic()
            assert client.submit(work, task_s, pure=False).result(timeout=60) == task_s
            waits.append(time.monotonic() - t - task_s)
            time.sleep(pause_s)
        retired = actions(client, "retired")
        print(
            f"task {task_s}s pause {pause_s}s: {len(waits)} tasks, retirements {len(retired)}, "
            f"scale-downs {len(actions(client, 'ScaleDown'))}, longest extra wait {max(waits):.2f}s"
        )
        assert retired == [], "a worker busy with the trickle was retired"
        assert [w["name"] for w in client.scheduler_info()["workers"].values()] == [first]
        # idle for real: the worker goes after the 5s window (it holds no results)
        t_idle = time.monotonic()
        wait_for(lambda: client.scheduler_info()["workers"] == {}, 60, "the idle worker to go", every=0.2)
        assert [list(e["workers"]) for e in actions(client, "retired")] == [[first]]
        print(f"idle -> retired after {time.monotonic() - t_idle:.1f}s")
