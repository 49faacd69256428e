"""The `dask worker` command line: one builder for the Kubernetes pods and the local backend.

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

WORKER_PRELOAD = "dask_adaptive.worker"
DASK_WORKER = ("dask", "worker")  # the CLI on PATH, as in the pods


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
