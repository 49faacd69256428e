"""Worker preload: a readiness endpoint, and SIGTERM turned into a graceful retirement.

Use it for the worker AND its nanny (one module, it tells them apart):

    dask worker tcp://<scheduler>:8786 --name $(POD_NAME) ... \
        --preload dask_adaptive.worker --preload-nanny dask_adaptive.worker

Why both: `dask worker` runs a nanny by default, and SIGTERM reaches the CLI process that hosts the
nanny, whose handler (distributed/cli/dask_worker.py) closes hard and loses unique data. Here:
* in the nanny, SIGTERM is taken over and forwarded to the worker process, which retires itself;
  the nanny then follows the worker out (the worker closes its nanny when it is done);
* in the worker, SIGTERM stops new work, lets running tasks finish (all of the budget but what moving
  its data needs: `move_reserve`) and asks the scheduler to retire this worker (its data moves
  elsewhere), retrying
  until `adaptive.worker.sigterm-timeout` (default 25s, under the pod's 30s grace period) in case a
  replacement worker is still joining, then closes the worker and its nanny.
If the container runtime signals the whole process group (`tini -g`, as the stock image does), the
worker simply gets SIGTERM twice; the second is ignored. With `--no-nanny` the worker preload alone
does the job.

`GET /dask-adaptive/ready` on the worker's HTTP server answers 200 while the worker accepts work and
503 once it is retiring or closing: the Kubernetes readinessProbe turns retired workers NotReady, and a
ReplicaSet deletes NotReady pods before Ready ones, so a scale-down removes exactly the retired pods.

Handlers are installed with `signal.signal` from `dask_setup`, which distributed runs after its own
CLI handler is in place, so ours replaces it for SIGTERM only (SIGINT keeps the quick close).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

import dask.config
from dask.utils import parse_timedelta
from distributed.core import Status
from tornado.web import RequestHandler

import dask_adaptive.config  # noqa: F401 - loads the adaptive.* defaults into dask.config
from dask_adaptive.logs import configure_logging

logger = logging.getLogger("dask_adaptive.worker")

READY_PATH = "/dask-adaptive/ready"
READY_STATUSES = (Status.running, Status.paused)
_tasks: set[asyncio.Task[Any]] = set()  # strong refs to in-flight shutdowns


class ReadyHandler(RequestHandler):
    def initialize(self, worker: Any) -> None:
        self.worker = worker

    def get(self) -> None:
        status = self.worker.status
        self.set_header("Content-Type", "text/plain")
        if status not in READY_STATUSES:
            self.set_status(503)
        self.write(f"{status.name}\n")


# The least a retirement keeps of the SIGTERM budget, whatever the worker holds: the scheduler moves data
# in Active Memory Manager cycles (2s apart by default), and a recipient may still be joining.
MOVE_RESERVE_FLOOR = 10.0


def sigterm_timeout() -> float:
    return float(parse_timedelta(dask.config.get("adaptive.worker.sigterm-timeout"), default="seconds"))


def move_reserve(budget: float, held_bytes: int, bandwidth: float) -> float:
    """Seconds of a SIGTERM `budget` kept back for moving the worker's data away; pure.

    Four copies' worth of what it holds at the worker's measured `bandwidth` (bytes/s), and never less
    than MOVE_RESERVE_FLOOR (a quarter of a smaller budget). Running tasks get the rest: a task cut
    off runs again from the start elsewhere, so a worker holding little should give them nearly all.
    """
    one_copy = held_bytes / bandwidth if bandwidth > 0 else float("inf")
    return min(budget, max(4 * one_copy, min(MOVE_RESERVE_FLOOR, budget / 4)))


async def finish_running_tasks(worker: Any, deadline: float, budget: float) -> None:
    """Take no new tasks, and let those already running finish while `deadline` minus the time moving
    the worker's data needs (re-estimated as results come in) allows.

    Retiring at once would make the scheduler reschedule running tasks elsewhere, i.e. compute them
    twice; finished, their results are simply moved with the rest.
    """
    if worker.status in READY_STATUSES:
        # tells the scheduler (no new tasks) and pauses the worker's queue; the 503 readiness follows
        worker.status = Status.closing_gracefully
    while worker.state.executing or worker.state.long_running:
        # Worker.bandwidth starts at distributed.scheduler.bandwidth and follows measured transfers
        reserve = move_reserve(budget, worker.state.nbytes, worker.bandwidth)
        if time.monotonic() >= deadline - reserve:
            break
        await asyncio.sleep(0.1)


async def retire_and_close(worker: Any, timeout: float) -> None:
    """Let running tasks finish, have the scheduler move this worker's data away, then close."""
    deadline = time.monotonic() + timeout
    await finish_running_tasks(worker, deadline, timeout)
    while True:
        remaining = deadline - time.monotonic()
        try:
            result = await asyncio.wait_for(
                worker.scheduler.retire_workers(
                    workers=[worker.address],
                    close_workers=False,
                    remove=True,
                    stimulus_id=f"dask-adaptive-sigterm-{time.time()}",
                ),
                max(remaining, 0.1),
            )
            # an empty answer is either "aborted: nowhere to move the data" or "scheduler no longer
            # knows this worker"; only the first is worth waiting for, and only with data to save
            if worker.address in result or not len(worker.data):
                logger.info("dask-adaptive: SIGTERM: worker %s retired; closing", worker.name)
                break
            reason = "no other worker can take its data"
        except Exception as e:  # scheduler unreachable or slow: retry until the deadline
            reason = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            logger.error(
                "dask-adaptive: SIGTERM: could not retire %s (%s); closing anyway", worker.name, reason
            )
            break
        logger.warning(
            "dask-adaptive: SIGTERM: retirement of %s not done (%s); retrying", worker.name, reason
        )
        await asyncio.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
    await worker.close(nanny=True, reason="dask-adaptive-sigterm")


def _install_sigterm(loop: asyncio.AbstractEventLoop, action: Any) -> None:
    """Run `action()` (a coroutine function) once on the first SIGTERM; later ones are ignored."""
    fired = False

    def handler(signum: int, frame: FrameType | None) -> None:
        # no logging in a signal handler (not reentrant): hand over to the loop
        nonlocal fired
        if fired:
            return
        fired = True
        loop.call_soon_threadsafe(_start, action)

    signal.signal(signal.SIGTERM, handler)


def _start(action: Any) -> None:
    logger.info("dask-adaptive: SIGTERM received: graceful shutdown")
    task = asyncio.ensure_future(action())
    _tasks.add(task)
    task.add_done_callback(_done)


def _done(task: asyncio.Future[Any]) -> None:
    _tasks.discard(task)  # type: ignore[arg-type]
    if not task.cancelled() and task.exception() is not None:
        logger.error("dask-adaptive: graceful shutdown failed", exc_info=task.exception())


def _setup_worker(worker: Any) -> None:
    worker.http_application.add_handlers(".*$", [(READY_PATH, ReadyHandler, {"worker": worker})])
    if threading.current_thread() is not threading.main_thread():
        logger.warning("dask-adaptive: worker not in the main thread; SIGTERM stays as distributed set it")
        return
    timeout = sigterm_timeout()
    _install_sigterm(asyncio.get_running_loop(), lambda: retire_and_close(worker, timeout))


_nannies: list[Any] = []  # every nanny of this process (`dask worker --nworkers N` runs N)


async def _forward_to_workers() -> None:
    """Each worker retires itself and then closes its nanny; a nanny without a worker just closes."""
    for nanny in list(_nannies):
        pid = nanny.pid
        if pid is not None and nanny.process is not None and nanny.process.is_alive():
            os.kill(pid, signal.SIGTERM)
        else:
            await nanny.close(reason="dask-adaptive-sigterm-no-worker")


def _setup_nanny(nanny: Any) -> None:
    _nannies.append(nanny)
    if len(_nannies) == 1 and threading.current_thread() is threading.main_thread():
        _install_sigterm(asyncio.get_running_loop(), _forward_to_workers)


def dask_setup(server: Any) -> None:
    from distributed import Nanny

    configure_logging()
    if isinstance(server, Nanny):
        _setup_nanny(server)
    else:
        _setup_worker(server)


def dask_teardown(server: Any) -> None:
    if server in _nannies:
        _nannies.remove(server)
