"""SIGTERM to a worker holding the only copy of a result: the result survives, nothing recomputes.

Covers the ways a worker meets SIGTERM: the documented Kubernetes command line (nanny; the runtime
signals only PID 1), the whole process group (`tini -g`, as the stock image; here a worker of the
local backend in the pods' layout, `--worker-nanny true`), and `--no-nanny` (the local backend's
default layout, whose scale-downs the local end-to-end tests exercise). Also the readiness endpoint
the Kubernetes probe uses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from distributed import Client

from testbed.dask.procs import (
    K8S_WORKER_FLAGS,
    alive,
    count_executions,
    env,
    http_get,
    mark_and_sleep,
    scheduler,
    stop,
    wait_for,
)


def start_worker(
    address: str, name: str, tmp_path: Path, nanny: bool = True, *extra: str, **extra_env: str
) -> subprocess.Popen[bytes]:
    """The worker command line of the Kubernetes Deployment (ports 0 instead of fixed ones)."""
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name, *extra]
    cmd += ["--nthreads", "1", "--memory-limit", "512MiB", "--dashboard-address", "127.0.0.1:0"]
    cmd += ["--local-directory", str(tmp_path / name)]
    cmd += K8S_WORKER_FLAGS if nanny else ["--no-nanny", "--preload", "dask_adaptive.worker"]
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env(**extra_env))


def by_name(client: Client) -> dict[str, tuple[str, dict]]:
    info = client.scheduler_info(n_workers=-1)["workers"]
    return {str(w["name"]): (addr, w) for addr, w in info.items()}


def only_copy_on(client: Client, worker: str, key: str, marks: Path):
    """A computed result and a scattered (unrecomputable) value, both only on `worker`."""
    computed = client.submit(
        mark_and_sleep, key, str(marks), 0, key=key, workers=[worker], allow_other_workers=False, pure=False
    )
    [scattered] = client.scatter([f"scattered-{key}"], workers=[worker])
    computed.result()
    who_has = client.who_has([computed, scattered])
    assert all(set(holders) == {worker} for holders in who_has.values()), who_has
    return computed, scattered


def assert_survived(client: Client, key: str, computed, scattered, marks: Path) -> None:
    assert computed.result(timeout=30) == f"result-{key}"
    assert scattered.result(timeout=30) == f"scattered-{key}"
    assert count_executions(marks)[key] == 1, "the result moved, it was not recomputed"


def test_sigterm_retires_gracefully_and_readiness_follows_status(tmp_path: Path):
    marks = tmp_path / "marks"
    marks.mkdir()
    # minimum through the environment: dask config key adaptive.min-workers
    extra_env = {"DASK_ADAPTIVE__MIN_WORKERS": "2"}
    options = ["--backend", "local", "--max-workers", "3", "--scale-down-delay", "5m", "--interval", "200ms"]
    options += ["--worker-nanny", "true"]
    with scheduler(tmp_path, *options, extra_env=extra_env) as s, Client(s.address, timeout=30) as client:
        own = {
            "k8s-sigterm": start_worker(s.address, "k8s-sigterm", tmp_path),
            "k8s-ready": start_worker(s.address, "k8s-ready", tmp_path),
            "no-nanny": start_worker(s.address, "no-nanny", tmp_path, nanny=False),
        }
        try:
            wait_for(lambda: len(by_name(client)) >= 5, 120, "2 backend workers + 3 test workers", every=0.3)
            names = by_name(client)
            backend_workers = sorted(n for n in names if n.startswith("local-"))
            assert len(backend_workers) == 2, names.keys()  # DASK_ADAPTIVE__MIN_WORKERS=2 took effect

            # readiness: 200 while accepting work, 503 once retiring
            addr, info = names["k8s-ready"]
            ready_url = f"http://127.0.0.1:{info['services']['dashboard']}/dask-adaptive/ready"
            assert http_get(ready_url)[0] == 200
            client.retire_workers([addr], close_workers=False, remove=False)
            assert wait_for(lambda: http_get(ready_url)[0] == 503, 30, "readiness to turn 503")
            own["k8s-ready"].send_signal(signal.SIGTERM)
            assert own["k8s-ready"].wait(60) == 0

            # 1. documented Kubernetes command line, SIGTERM to the CLI/nanny process only
            addr, _ = names["k8s-sigterm"]
            computed, scattered = only_copy_on(client, addr, "k8s", marks)
            own["k8s-sigterm"].send_signal(signal.SIGTERM)
            assert own["k8s-sigterm"].wait(60) == 0, "exits cleanly within the grace period"
            assert "k8s-sigterm" not in by_name(client)
            assert_survived(client, "k8s", computed, scattered, marks)

            # 2. --no-nanny
            addr, _ = names["no-nanny"]
            computed, scattered = only_copy_on(client, addr, "nonanny", marks)
            own["no-nanny"].send_signal(signal.SIGTERM)
            assert own["no-nanny"].wait(60) == 0
            assert_survived(client, "nonanny", computed, scattered, marks)

            # 3. a local-backend worker with its nanny, SIGTERM to its whole process group
            victim = backend_workers[0]
            addr, _ = names[victim]
            assert names[victim][1]["nanny"], "--worker-nanny true: the pods' layout"
            nanny_pid = client.run(os.getppid, workers=[addr])[addr]
            assert client.run(os.getpgid, 0, workers=[addr])[addr] == nanny_pid, "the group's leader"
            computed, scattered = only_copy_on(client, addr, "group", marks)
            os.killpg(nanny_pid, signal.SIGTERM)
            wait_for(lambda: not alive(nanny_pid), 60, "the nanny to exit")
            assert victim not in by_name(client)
            assert_survived(client, "group", computed, scattered, marks)
            # the controller replaces it: the minimum is 2 again
            wait_for(
                lambda: sum(n.startswith("local-") for n in by_name(client)) == 2,
                60,
                "a replacement",
                every=0.3,
            )
        finally:
            for process in own.values():
                stop(process, sig=signal.SIGINT)


def test_sigterm_waits_for_a_replacement_to_take_the_only_copy(tmp_path: Path):
    """Node drain of the only worker: the Deployment's replacement pod joins within the grace period."""
    marks = tmp_path / "marks"
    marks.mkdir()
    # a plain scheduler: nobody but the test starts the replacement
    with scheduler(tmp_path, preload=False) as s, Client(s.address, timeout=30) as client:
        first = start_worker(s.address, "drained", tmp_path, DASK_ADAPTIVE__WORKER__SIGTERM_TIMEOUT="90s")
        replacement = None
        try:
            wait_for(lambda: "drained" in by_name(client), 60, "the first worker")
            addr, _ = by_name(client)["drained"]
            computed, scattered = only_copy_on(client, addr, "drain", marks)
            first.send_signal(signal.SIGTERM)
            log = tmp_path / "drained.log"
            wait_for(
                lambda: "retrying" in log.read_text(errors="replace"), 60, "a retirement that cannot finish"
            )
            assert first.poll() is None, "does not exit while its data has nowhere to go"
            replacement = start_worker(s.address, "replacement", tmp_path)
            assert first.wait(90) == 0
            assert_survived(client, "drain", computed, scattered, marks)
            assert set(by_name(client)) == {"replacement"}
        finally:
            stop(first, sig=signal.SIGINT)
            if replacement is not None:
                stop(replacement, sig=signal.SIGINT)


def test_sigterm_lets_a_running_task_finish_instead_of_recomputing_it(tmp_path: Path):
    marks = tmp_path / "marks"
    marks.mkdir()
    with scheduler(tmp_path, preload=False) as s, Client(s.address, timeout=30) as client:
        # a 12s budget, holding nothing: the data keeps 3s of it (worker.move_reserve), the running task
        # gets 9s; a 7.5s task would have been cut off at half the budget
        busy = start_worker(s.address, "busy", tmp_path, DASK_ADAPTIVE__WORKER__SIGTERM_TIMEOUT="12s")
        other = start_worker(s.address, "other", tmp_path)
        multi = None
        try:
            wait_for(lambda: {"busy", "other"} <= set(by_name(client)), 60, "two workers")
            addr, _ = by_name(client)["busy"]
            # may run elsewhere: if `busy` went away mid-task, the scheduler would run it again on `other`
            future = client.submit(
                mark_and_sleep, "slow", str(marks), 7.5, key="slow", workers=[addr], allow_other_workers=True
            )
            wait_for(lambda: count_executions(marks).get("slow"), 60, "the task to start on busy")
            busy.send_signal(signal.SIGTERM)
            assert busy.wait(60) == 0
            assert future.result(timeout=30) == "result-slow"
            assert count_executions(marks) == {"slow": 1}, "finished on busy and moved, not recomputed"

            # `--nworkers 2`: one CLI process, two nannies; SIGTERM retires both workers
            multi = start_worker(s.address, "multi", tmp_path, True, "--nworkers", "2")
            wait_for(lambda: {"multi-0", "multi-1"} <= set(by_name(client)), 60, "two workers of one CLI")
            kept = [only_copy_on(client, by_name(client)[n][0], n, marks) for n in ("multi-0", "multi-1")]
            multi.send_signal(signal.SIGTERM)
            assert multi.wait(60) == 0
            for name, (computed, scattered) in zip(("multi-0", "multi-1"), kept, strict=True):
                assert_survived(client, name, computed, scattered, marks)
        finally:
            for process in (busy, other, multi):
                if process is not None:
                    stop(process, sig=signal.SIGINT)
