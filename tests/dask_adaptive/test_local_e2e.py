"""Local backend end to end: the preload loaded exactly as in production, real worker processes."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client

from testbed.dask.procs import count_executions, http_get, mark_and_sleep, scheduler, wait_for

MEASUREMENTS = Path("/tmp/dask-adaptive-measurements.json")


def workers(client: Client) -> dict[str, dict]:
    return client.scheduler_info(n_workers=-1)["workers"]


def events(client: Client) -> list[tuple[float, dict]]:
    return client.get_events("adaptive")


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not on /metrics"
    return float(match.group(1))


def test_zero_to_n_to_floor_without_losing_or_recomputing(tmp_path: Path):
    """Two bursts: 0 -> N -> floor -> N -> floor, results of both held throughout, fetched at the end."""
    marks = tmp_path / "marks"
    marks.mkdir()
    per_burst, bursts = 16, 2
    options = ["--backend", "local", "--min-workers", "0", "--max-workers", "3", "--interval", "200ms"]
    options += ["--scale-down-delay", "3s", "--worker-memory-limit", "512MiB"]
    futures = []
    timings = []
    with scheduler(tmp_path, *options) as s, Client(s.address, timeout=30) as client:
        time.sleep(2)
        assert workers(client) == {}, "starts with 0 workers"

        for burst in range(bursts):
            t_submit = time.time()
            batch = [
                client.submit(
                    mark_and_sleep, f"b{burst}-{i}", str(marks), 0.5, key=f"b{burst}-{i}", pure=False
                )
                for i in range(per_burst)
            ]
            futures += batch
            peak = 0

            def all_done(batch=batch) -> bool:
                nonlocal peak
                peak = max(peak, len(workers(client)))
                return all(f.done() for f in batch)

            wait_for(all_done, 120, f"burst {burst} to finish", every=0.2)
            t_done = time.time()
            assert 2 <= peak <= 3, "scaled out beyond one worker, never above --max-workers"

            # idle: after the window every worker goes except the one the held results need
            # (workers_to_close keeps twice the stored bytes of memory): the floor here is 1
            wait_for(lambda: len(workers(client)) == 1, 60, "scale-down to the data floor", every=0.2)
            timings.append((t_submit, t_done, time.time(), peak))
            time.sleep(1.5)
            assert len(workers(client)) == 1, "stays at the floor while results are held"

        # results held by retired workers survive: every one is fetched after the scale-downs
        keys = [f"b{b}-{i}" for b in range(bursts) for i in range(per_burst)]
        assert client.gather(futures) == [f"result-{k}" for k in keys]
        counts = count_executions(marks)
        assert counts == dict.fromkeys(keys, 1), "no task computed twice, none lost"

        # metrics on the scheduler's own /metrics
        dashboard = client.scheduler_info()["services"]["dashboard"]
        status, text = http_get(f"http://127.0.0.1:{dashboard}/metrics")
        assert status == 200
        assert metric(text, "dask_adaptive_retirements_total") >= bursts
        assert metric(text, "dask_adaptive_scale_ups_total") >= bursts
        assert metric(text, "dask_adaptive_failed_retirements_total") == 0
        assert metric(text, "dask_adaptive_observed_workers") == 1
        assert metric(text, "dask_adaptive_requested_workers") == 1

        log = events(client)

        # releasing the results lets the last worker go too (minimum 0)
        futures.clear()
        batch.clear()  # the last burst's list is referenced here too
        wait_for(lambda: workers(client) == {}, 60, "scale-down to zero", every=0.2)

    def first(action: str, after: float) -> float | None:
        times = [t for t, e in log if e["action"] == action and t >= after]
        return round(min(times) - after, 2) if times else None

    info = [
        {
            "submit_to_first_request_s": first("ScaleUp", t_submit),
            "submit_to_first_worker_s": first("arrived", t_submit),
            "idle_to_scale_down_decision_s": first("ScaleDown", t_done),
            "idle_to_floor_s": round(t_floor - t_done, 2),
            "peak_workers": peak,
        }
        for t_submit, t_done, t_floor, peak in timings
    ]
    MEASUREMENTS.write_text(json.dumps({"bursts": info, "results_lost": 0, "tasks_recomputed": 0}))
    print(info)


@pytest.mark.parametrize(
    ("options", "env", "reason"),
    [
        (["--min-workers", "-1"], {}, "adaptive.min-workers='-1' is invalid"),
        (["--min-workers", "3", "--max-workers", "2"], {}, "adaptive.max-workers='2' is invalid"),
        (["--scale-down-delay", "soon"], {}, "adaptive.scale-down-delay='soon' is invalid"),
        (["--backend", "kubernetes"], {}, "adaptive.namespace=None is invalid"),
        ([], {"DASK_ADAPTIVE__INTERVAL": "0s"}, "adaptive.interval='0s' is invalid"),
        # an unusable backend: Kubernetes outside a pod (no service-account token)
        (
            ["--backend", "kubernetes", "--namespace", "n", "--deployment", "d", "--selector", "app=w"],
            {"DASK_ADAPTIVE__KUBERNETES__SERVICE_ACCOUNT_DIR": "/nonexistent"},
            "backend kubernetes unavailable",
        ),
    ],
)
def test_bad_options_end_the_scheduler_with_one_line_reason(tmp_path: Path, options, env, reason):
    import subprocess

    from testbed.dask.procs import env as make_env
    from testbed.dask.procs import scheduler_command

    result = subprocess.run(
        scheduler_command(tmp_path / "s.json", options),
        capture_output=True,
        env=make_env(**env),
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    lines = [
        line for line in result.stderr.decode().splitlines() if line.startswith("dask-adaptive: cannot start")
    ]
    assert len(lines) == 1 and reason in lines[0], result.stderr.decode()[-2000:]


@pytest.mark.parametrize("nanny", [False, True])
def test_local_workers_run_the_pods_command_line(monkeypatch: pytest.MonkeyPatch, nanny: bool):
    """One builder (dask_adaptive.command) for the pods and the local processes; stdlib only, because the
    Pulumi program imports it too. The local default drops the nanny (one process per worker)."""
    from dask_adaptive.backends.base import BackendError
    from dask_adaptive.backends.local import LocalBackend

    spawned: list[list[str]] = []

    async def capture(*cmd: str, **_: object) -> None:
        spawned.append(list(cmd))
        raise OSError("not started in this test")

    async def main() -> str:
        backend = LocalBackend(
            "tcp://127.0.0.1:8786", nthreads=2, memory_limit="512MiB", name_prefix="w", nanny=nanny
        )
        await backend.start()
        monkeypatch.setattr(asyncio, "create_subprocess_exec", capture)
        try:
            with pytest.raises(BackendError, match="not started in this test"):
                await backend.scale_up(1)
        finally:
            monkeypatch.undo()
            await backend.close()
        return spawned[0][spawned[0].index("--local-directory") + 1]

    workdir = asyncio.run(main())
    host = ["--preload-nanny", "dask_adaptive.worker"] if nanny else ["--no-nanny"]
    assert spawned == [[
        sys.executable, "-m", "distributed.cli.dask_worker",
        "tcp://127.0.0.1:8786", "--name", "w-1", "--nthreads", "2", "--memory-limit", "512MiB",
        "--dashboard-address", ":0", "--local-directory", workdir,
        "--preload", "dask_adaptive.worker", *host,
    ]]  # fmt: skip
    assert workdir.endswith("/w-1")
    blocked = "import sys; sys.modules.update(dask=None, distributed=None, tornado=None, yaml=None)"
    code = (
        f"{blocked}; from dask_adaptive.command import worker_command; print(worker_command('x', "
        "name='n', nthreads=1, memory_limit=1, dashboard_address=':1', local_directory='/d')[:2])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['dask', 'worker']"
