"""Settings of the preload: one frozen, validated object built from options and dask config.

Defaults live in `adaptive.yaml` only; this module merges them into `dask.config` (so the usual
`DASK_ADAPTIVE__*` environment variables work) and validates the merged values once, at start.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta

BACKENDS = ("kubernetes", "local")
_YAML = os.path.join(os.path.dirname(__file__), "adaptive.yaml")


def load_defaults() -> None:
    """Merge adaptive.yaml under any values already set (env, user files), like distributed does."""
    with open(_YAML) as f:
        dask.config.update_defaults(yaml.safe_load(f))


load_defaults()


class SettingsError(ValueError):
    """An option has a value that is not allowed; the message names the key, the value and the rule."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        super().__init__(f"adaptive.{key}={value!r} is invalid: {allowed}")
        self.key = key


@dataclass(frozen=True)
class Settings:
    """Everything the controller and the backends need; durations are in seconds."""

    backend: str
    minimum: int
    maximum: int
    interval: float
    target_duration: float
    scale_down_delay: float
    orphan_grace: float
    namespace: str | None
    deployment: str | None
    selector: str | None
    service_account_dir: str
    worker_nthreads: int
    worker_memory_limit: str


# option name (as on the command line, without "--") -> dask config key under "adaptive."
OPTION_KEYS: dict[str, str] = {
    "backend": "backend",
    "minimum": "minimum",
    "maximum": "maximum",
    "interval": "interval",
    "target-duration": "target-duration",
    "scale-down-delay": "scale-down-delay",
    "orphan-grace": "orphan-grace",
    "namespace": "namespace",
    "deployment": "deployment",
    "selector": "selector",
    "service-account-dir": "kubernetes.service-account-dir",
    "worker-nthreads": "local.worker-nthreads",
    "worker-memory-limit": "local.worker-memory-limit",
}


def _int(key: str, value: Any, lowest: int) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
    except (TypeError, ValueError, OverflowError):
        raise SettingsError(key, value, f"must be an integer >= {lowest}") from None
    if number < lowest:
        raise SettingsError(key, value, f"must be an integer >= {lowest}")
    return number


def _seconds(key: str, value: Any, *, positive: bool) -> float:
    try:
        seconds = float(parse_timedelta(value, default="seconds"))
    except (TypeError, ValueError, KeyError):
        raise SettingsError(key, value, "must be a duration such as 30s, 2m or 500ms") from None
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0 or (positive and seconds == 0):
        rule = "must be a finite duration > 0" if positive else "must be a finite duration >= 0"
        raise SettingsError(key, value, rule)
    return seconds


def _text(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SettingsError(key, value, "must be a string")
    return value


def resolve(options: Mapping[str, Any]) -> Settings:
    """Validate `options` (None = not given) falling back to dask config; raise SettingsError."""

    def get(option: str) -> Any:
        given = options.get(option.replace("-", "_"))
        return given if given is not None else dask.config.get(f"adaptive.{OPTION_KEYS[option]}")

    backend = get("backend")
    if backend not in BACKENDS:
        raise SettingsError("backend", backend, f"must be one of {', '.join(BACKENDS)}")
    minimum = _int("minimum", get("minimum"), 0)
    maximum = _int("maximum", get("maximum"), max(1, minimum))
    memory_limit = str(get("worker-memory-limit"))
    if memory_limit != "auto":
        try:
            if parse_bytes(memory_limit) < 0:
                raise ValueError(memory_limit)
        except (TypeError, ValueError):
            raise SettingsError(
                "local.worker-memory-limit", memory_limit, "must be a size such as 2GiB, 0 or auto"
            ) from None
    settings = Settings(
        backend=backend,
        minimum=minimum,
        maximum=maximum,
        interval=_seconds("interval", get("interval"), positive=True),
        target_duration=_seconds("target-duration", get("target-duration"), positive=True),
        scale_down_delay=_seconds("scale-down-delay", get("scale-down-delay"), positive=False),
        orphan_grace=_seconds("orphan-grace", get("orphan-grace"), positive=True),
        namespace=_text("namespace", get("namespace")),
        deployment=_text("deployment", get("deployment")),
        selector=_text("selector", get("selector")),
        service_account_dir=str(get("service-account-dir")),
        worker_nthreads=_int("local.worker-nthreads", get("worker-nthreads"), 1),
        worker_memory_limit=memory_limit,
    )
    if backend == "kubernetes":
        for key in ("namespace", "deployment", "selector"):
            if getattr(settings, key) is None:
                raise SettingsError(key, None, "is required with --backend kubernetes")
    return settings
