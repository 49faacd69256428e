"""Adaptive scaling for Dask, run inside the scheduler as a preload.

The scheduler's own work estimate decides how many workers are wanted; a backend (Kubernetes worker
Deployment, or local worker processes) provides them. Scale-down retires workers through the scheduler
first, so results move before exactly those workers are removed.

Scheduler (options fall back to dask config `adaptive.*`, defaults in adaptive.yaml):

    dask scheduler --preload dask_adaptive.preload --backend kubernetes \\
        --namespace NS --deployment dask-worker --selector app=dask-worker \\
        --min-workers 0 --max-workers 50 --interval 1s --target-duration 5s --scale-down-delay 30s

Workers (readiness endpoint + graceful SIGTERM; the module serves worker and nanny alike):

    dask worker tcp://SCHEDULER:8786 --name $(POD_NAME) --dashboard-address :8788 \\
        --preload dask_adaptive.worker --preload-nanny dask_adaptive.worker

Modules: preload (entry point, options), config (validated settings, read once), decisions (pure
decisions), controller (the loop), executor (the data-safe scale-down), internals (the one reach into
distributed), reconcile (orphans), metrics (/metrics), command (the `dask worker` command line), worker
(worker preload), backends/ (base: the contract; departures: the one record of units on their way out; local;
kubernetes/: api, ranking, backend), demo/ (`python -m dask_adaptive demo`).
"""
