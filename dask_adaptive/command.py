"""The `dask worker` command line: one builder for the Kubernetes pods and the local backend.

Both run the same worker with the same flags (a fixed name, so worker name = unit name; the worker preload
for readiness and graceful SIGTERM, in the nanny too); only the program, the name, the sizes and the
paths differ. The Pulumi program (infra/k8s/dask_objects.py) imports this module, and so does the
preload in the stock Dask image: stdlib only, and nothing else of the package is imported by it.
"""

from __future__ import annotations

from collections.abc import Sequence

WORKER_PRELOAD = "dask_adaptive.worker"
DASK_WORKER = ("dask", "worker")  # the CLI on PATH, as in the pods


def worker_command(
    scheduler_address: str,
    *,
    name: str,
    nthreads: int,
    memory_limit: str | int,
    dashboard_address: str,
    local_directory: str,
    program: Sequence[str] = DASK_WORKER,
) -> list[str]:
    """argv of one worker; `program` is how `dask worker` is started (a local process uses the venv's)."""
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
        "--preload-nanny",
        WORKER_PRELOAD,
    ]
