"""The Dask command lines: `dask scheduler` with the preload, and `dask worker`, built here for both the
Kubernetes pods (the Pulumi program imports this module) and the local backend.

The scheduler's preload flags come from the options table (options.py): the program passes values by
their Python names (`PreloadArgs(max_workers=...)`) and spells no flag. The workers' preload settings
travel as Dask's own environment (`worker_environment`), named from their config keys.

Both run the same worker with the same flags (a fixed name, so worker name = unit name; the worker preload
for readiness and graceful SIGTERM, in the nanny too); only the program, the name, the sizes, the
paths and (local backend, `local.worker-nanny`) whether a nanny hosts the worker differ. The Pulumi
program (infra/k8s/dask_objects.py) imports this module, and so does the preload in the stock Dask
image: stdlib only, and nothing else of the package is imported by it.

TLS: the pods get their certificates through Dask's own `DASK_DISTRIBUTED__COMM__TLS__*` environment,
so their command line carries none. A local worker of a TLS scheduler may not have that environment
(the scheduler can be started with `--tls-ca-file/--tls-cert/--tls-key` alone), so `tls` puts the
same files on its command line: `dask worker --tls-*` sets the worker role's certificate, which the
nanny and its worker use both to connect and to listen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dask_adaptive.options import PRELOAD, dask_env_name

WORKER_PRELOAD = "dask_adaptive.worker"
DASK_WORKER = ("dask", "worker")  # the CLI on PATH, as in the pods
DASK_SCHEDULER = ("dask", "scheduler")
# The worker preload's config keys under "adaptive." (adaptive.yaml `worker:`; a test holds them equal).
WORKER_SIGTERM_TIMEOUT = "worker.sigterm-timeout"


def scheduler_command(
    preload: Any,
    *,
    port: int,
    dashboard_address: str,
    tls: bool = False,
    program: Sequence[str] = DASK_SCHEDULER,
) -> list[str]:
    """argv of a scheduler running the preload; `preload` is an options.PreloadArgs."""
    return [
        *program,
        "--port",
        str(port),
        "--dashboard-address",
        dashboard_address,
        *(["--protocol", "tls"] if tls else []),
        "--preload",
        PRELOAD,
        *preload.argv(),
    ]


def worker_environment(sigterm_timeout_seconds: float) -> dict[str, str]:
    """The worker preload's settings as Dask reads them from the environment (a misspelt name would be
    silently ignored and fall back to the default, so it is derived from the key, never typed)."""
    return {dask_env_name(WORKER_SIGTERM_TIMEOUT): f"{sigterm_timeout_seconds:g}s"}


@dataclass(frozen=True)
class WorkerTls:
    """PEM files a worker presents and trusts; `key` None: the key is appended to the cert file."""

    ca_file: str
    cert: str
    key: str | None = None

    def flags(self) -> list[str]:
        return [
            "--tls-ca-file",
            self.ca_file,
            "--tls-cert",
            self.cert,
            *(["--tls-key", self.key] if self.key else []),
        ]


def worker_command(
    scheduler_address: str,
    *,
    name: str,
    nthreads: int,
    memory_limit: str | int,
    dashboard_address: str,
    local_directory: str,
    program: Sequence[str] = DASK_WORKER,
    tls: WorkerTls | None = None,
    nanny: bool = True,
) -> list[str]:
    """argv of one worker; `program` is how `dask worker` is started (a local process uses the venv's).

    `nanny=False`: `--no-nanny`, one process; the worker preload alone turns SIGTERM into a retirement.
    """
    return [
        *program,
        scheduler_address,
        "--name",
        name,
        "--nthreads",
        str(nthreads),
        "--memory-limit",
        str(memory_limit),
        "--dashboard-address",
        dashboard_address,
        "--local-directory",
        local_directory,
        "--preload",
        WORKER_PRELOAD,
        *(["--preload-nanny", WORKER_PRELOAD] if nanny else ["--no-nanny"]),
        *(tls.flags() if tls else []),
    ]
