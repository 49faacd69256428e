"""The scheduler preload: `dask scheduler --preload dask_adaptive.preload [options]`.

`dask_setup` is a click command, the form through which distributed hands the extra command-line
options to a preload. Every option falls back to dask config key `adaptive.<name>` (defaults and
meanings in adaptive.yaml, which also gives the --help texts; e.g. env DASK_ADAPTIVE__MIN_WORKERS=2);
CONFIG.md lists every option and key.

distributed's PreloadManager catches `Exception` from a preload, logs it and runs on *without* the
autoscaler; a misconfigured autoscaler must not look healthy, so every start-up failure here is a
SystemExit with a one-line reason, which ends the scheduler process non-zero.

The controller is stored in `scheduler.extensions["adaptive"]` (a strong reference: nothing else
holds it) and stopped by `dask_teardown` when the scheduler closes.

Only the stdlib, dask, distributed, tornado, click and (optionally) prometheus_client are imported
here: this module runs inside the stock Dask image.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from distributed.versions import get_versions

from dask_adaptive.backends.base import Backend, BackendUnavailable
from dask_adaptive.config import PreloadSettings, SettingsError, option_help, resolve
from dask_adaptive.controller import Controller
from dask_adaptive.logs import configure_logging
from dask_adaptive.metrics import register, unregister
from dask_adaptive.options import OPTIONS
from dask_adaptive.versions import PLUGIN_NAME, VersionGate

logger = logging.getLogger("dask_adaptive")

EXTENSION = "adaptive"


def make_backend(settings: PreloadSettings, scheduler: Any) -> Backend:
    if settings.backend == "kubernetes":
        # imported lazily: the local backend must not depend on the Kubernetes module
        from dask_adaptive.backends.kubernetes.api import retry_policy
        from dask_adaptive.backends.kubernetes.backend import KubernetesBackend

        return KubernetesBackend(
            namespace=settings.namespace,
            deployment=settings.deployment,
            selector=settings.selector,
            service_account_dir=settings.service_account_dir,
            not_ready_timeout=settings.not_ready_timeout,
            settle_timeout=settings.settle_timeout,
            poll_interval=settings.poll_interval,
            retry_policy=retry_policy(settings.request_timeout, settings.retry_budget),
        )
    from dask_adaptive.backends.local import LocalBackend

    return LocalBackend(
        scheduler.address,
        nthreads=settings.worker_threads,
        memory_limit=settings.worker_memory_limit,
        nanny=settings.worker_nanny,
        registered=lambda: {str(ws.name) for ws in scheduler.workers.values()},
        security=getattr(scheduler, "security", None),  # a TLS scheduler's workers get its certificates
    )


def _fail(reason: str) -> None:
    """End the scheduler process: SystemExit passes through distributed's `except Exception`."""
    message = f"dask-adaptive: cannot start: {reason}"
    logger.critical(message)
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def _with_options(command: Any) -> Any:
    """One click option per row of the options table (values arrive as text; `resolve` validates)."""
    for option in reversed(OPTIONS):  # click lists decorators applied last first
        kind = click.Choice(option.choices) if option.choices else str
        command = click.option(option.flag, type=kind, default=None, help=option_help(option.name))(command)
    return command


@click.command(context_settings={"ignore_unknown_options": False})
@_with_options
async def dask_setup(scheduler: Any, **options: Any) -> None:
    configure_logging()
    # _fail is called outside the except blocks so the exit carries no chained traceback
    error: str | None = None
    try:
        settings = resolve(options)
        backend = make_backend(settings, scheduler)
        controller = Controller(scheduler, backend, settings)
        await controller.start()
    except SettingsError as e:
        error = str(e)
    except BackendUnavailable as e:
        error = f"backend {settings.backend} unavailable: {e}"
    except Exception as e:  # anything else at start (e.g. a BackendError) must not be swallowed either
        error = f"backend: {type(e).__name__}: {e}"
    if error is not None:
        _fail(error)
        return
    scheduler.extensions[EXTENSION] = controller
    controller.metrics_handle = register(controller.stats)
    # A worker built from other pins is refused at once, named in the log and as an Event (versions.py).
    scheduler.add_plugin(
        VersionGate(get_versions()["packages"], lambda m: backend.record("WrongVersions", m)),
        name=PLUGIN_NAME,
    )
    logger.info(
        "dask-adaptive: started backend=%s min-workers=%d min-workers-schedule=%r max-workers=%d "
        "interval=%gs target-duration=%gs scale-down-delay=%gs worker-threads=%d node-packing=%s",
        settings.backend,
        settings.min_workers,
        str(settings.min_workers_schedule),
        settings.max_workers,
        settings.interval,
        settings.target_duration,
        settings.scale_down_delay,
        settings.worker_threads,
        str(settings.node_packing).lower(),
    )


async def dask_teardown(scheduler: Any) -> None:
    if PLUGIN_NAME in scheduler.plugins:
        scheduler.remove_plugin(name=PLUGIN_NAME)
    controller = scheduler.extensions.pop(EXTENSION, None)
    if isinstance(controller, Controller):
        unregister(controller.metrics_handle)
        await controller.stop()
