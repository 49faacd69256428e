"""Settings of the preload: one frozen, validated object built from options and dask config.

Defaults live in `adaptive.yaml` only; this module merges them into `dask.config` (so the usual
`DASK_ADAPTIVE__*` environment variables work) and validates the merged values once, at start. The
comment beside each key there is its documented meaning (`reference()`): the preload's --help and
CONFIG.md are built from it, so documentation and defaults cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta

from dask_adaptive.options import BACKENDS, BY_FIELD, BY_NAME, OPTIONS, dask_env_name
from dask_adaptive.schedule import Schedule, parse_schedule

__all__ = ["BACKENDS", "PreloadSettings", "SettingsError", "resolve"]
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
class PreloadSettings:
    """Everything the controller and the backends need; durations are in seconds."""

    backend: str
    min_workers: int
    max_workers: int
    min_workers_schedule: Schedule  # windows raising the minimum at given times (no windows: none)
    interval: float
    target_duration: float
    scale_down_delay: float
    orphan_grace: float
    retire_timeout: float
    namespace: str | None
    deployment: str | None
    selector: str | None
    service_account_dir: str
    worker_memory_limit: str
    worker_nanny: bool  # local: `dask worker` with its nanny (the pods' layout) or `--no-nanny`
    worker_threads: int  # threads of every worker (the local backend starts them so; divides a cold target)
    node_packing: bool  # victims packed by node (decisions.pack_victims); False: the scheduler's order
    worker_group: str  # label `group` of the worker-seconds counter (metrics.py)
    # kubernetes backend tunables (dask config only: no command-line option)
    not_ready_timeout: float
    settle_timeout: float
    poll_interval: float
    request_timeout: float
    retry_budget: float


# read from dask config only (tunables an operator rarely touches); validated like the options
CONFIG_ONLY_KEYS: dict[str, str] = {
    "not-ready-timeout": "kubernetes.not-ready-timeout",
    "settle-timeout": "kubernetes.settle-timeout",
    "poll-interval": "kubernetes.poll-interval",
    "request-timeout": "kubernetes.request-timeout",
    "retry-budget": "kubernetes.retry-budget",
}


@dataclass(frozen=True)
class Key:
    """One documented key of adaptive.yaml."""

    key: str  # full dask config key, e.g. "adaptive.kubernetes.settle-timeout"
    default: Any  # its value in adaptive.yaml
    meaning: str  # the comment beside it there
    option: str | None  # the preload's command-line option ("--min-workers"), if it has one

    @property
    def env(self) -> str:
        """The environment variable dask reads for it (DASK_ + path in upper case, `__` between levels)."""
        return dask_env_name(self.key.removeprefix("adaptive."))


# `<indent><key>: <value>  # <meaning>`; a key without a value opens a section
_KEY_LINE = re.compile(
    r"^(?P<indent> *)(?P<key>[a-z][a-z0-9-]*):(?P<value>[^#]*?)\s*(?:#\s*(?P<meaning>.*))?$"
)


def _meanings(text: str) -> dict[str, str]:
    """Full key -> the comment on its line, for every leaf (a key with a value) of the YAML text."""
    path: list[tuple[int, str]] = []
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if match is None:
            continue  # blank or comment-only
        indent = len(match["indent"])
        while path and path[-1][0] >= indent:
            path.pop()
        path.append((indent, match["key"]))
        if match["value"].strip():
            out[".".join(k for _, k in path)] = (match["meaning"] or "").strip()
    return out


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@functools.cache
def reference() -> dict[str, Key]:
    """Every leaf key of adaptive.yaml, in file order, with its default, meaning and preload option.

    Read once (cached): callers must not modify the result."""
    with open(_YAML) as f:
        text = f.read()
    meanings = _meanings(text)
    options = {f"adaptive.{o.key}": o.flag for o in OPTIONS}
    return {
        key: Key(key, default, meanings.get(key, ""), options.get(key))
        for key, default in _leaves(yaml.safe_load(text)).items()
    }


def config_markdown() -> str:
    """CONFIG.md: every preload option / dask config key / environment variable, default and meaning."""

    def cell(value: object) -> str:
        return "—" if value is None or value == "" else f"`{value}`"

    lines = [
        "# dask_adaptive configuration",
        "",
        "Generated from `dask_adaptive/adaptive.yaml` (the only place defaults are set) by",
        "`python -m dask_adaptive config-doc > dask_adaptive/CONFIG.md`; a test keeps the two equal.",
        "",
        "A preload option (`dask scheduler --preload dask_adaptive.preload --min-workers 2 ...`) wins over",
        "dask config (YAML files, or the environment variable), which wins over the default. Durations are",
        "written like `30s`, `2m` or `500ms`. The scheduler preload validates its values at start: a bad",
        "one ends the scheduler with `dask-adaptive: cannot start: adaptive.<key>=<value> is invalid: ...`.",
        "Keys without an option are read from dask config only. `adaptive.worker.*` is read by the worker",
        "preload (`dask worker --preload dask_adaptive.worker --preload-nanny dask_adaptive.worker`).",
        "",
        "| preload option | dask config key | environment variable | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for entry in reference().values():
        meaning = entry.meaning.replace("|", "\\|")
        lines.append(
            f"| {cell(entry.option)} | `{entry.key}` | `{entry.env}` | {cell(entry.default)} | {meaning} |"
        )
    return "\n".join(lines) + "\n"


def option_help(option: str) -> str:
    """--help text of a preload option: its meaning and default, from adaptive.yaml."""
    entry = reference()[f"adaptive.{BY_NAME[option].key}"]
    default = "" if entry.default is None else f" [{entry.default}]"
    return f"{entry.meaning}{default}"


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


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _bool(key: str, value: Any) -> bool:
    """A bool from YAML (already a bool) or from an option / environment variable (a string)."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower() if isinstance(value, str | int) else None
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise SettingsError(key, value, "must be true or false")


def _text(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SettingsError(key, value, "must be a string")
    return value


def _schedule(value: Any, max_workers: int) -> Schedule:
    """A schedule no window of which asks for more than max-workers could ever give."""
    if value is not None and not isinstance(value, str):
        raise SettingsError("min-workers-schedule", value, "must be a string")
    try:
        schedule = parse_schedule(value)
    except ValueError as e:
        raise SettingsError("min-workers-schedule", value, str(e)) from None
    for window in schedule.windows:
        if window.minimum > max_workers:
            rule = (
                f"window {window.text!r} asks for {window.minimum} workers, "
                f"above adaptive.max-workers={max_workers}"
            )
            raise SettingsError("min-workers-schedule", value, rule)
    return schedule


def resolve(options: Mapping[str, Any]) -> PreloadSettings:
    """Validate `options` (by Python name; None = not given) falling back to dask config; raise
    SettingsError. A name outside the options table is a programming error (click gives only known ones)."""
    unknown = sorted(set(options) - set(BY_FIELD))
    if unknown:
        raise TypeError(f"unknown preload options {unknown}; known: {', '.join(BY_FIELD)}")

    def get(option: str) -> Any:
        given = options.get(option.replace("-", "_"))
        return given if given is not None else dask.config.get(f"adaptive.{BY_NAME[option].key}")

    def tunable(name: str) -> float:
        key = CONFIG_ONLY_KEYS[name]
        return _seconds(key, dask.config.get(f"adaptive.{key}"), positive=True)

    backend = get("backend")
    if backend not in BACKENDS:
        raise SettingsError("backend", backend, f"must be one of {', '.join(BACKENDS)}")
    min_workers = _int("min-workers", get("min-workers"), 0)
    max_workers = _int("max-workers", get("max-workers"), max(1, min_workers))
    memory_limit = str(get("worker-memory-limit"))
    if memory_limit != "auto":
        try:
            if parse_bytes(memory_limit) < 0:
                raise ValueError(memory_limit)
        except (TypeError, ValueError):
            raise SettingsError(
                "local.worker-memory-limit", memory_limit, "must be a size such as 2GiB, 0 or auto"
            ) from None
    settings = PreloadSettings(
        backend=backend,
        min_workers=min_workers,
        max_workers=max_workers,
        min_workers_schedule=_schedule(get("min-workers-schedule"), max_workers),
        interval=_seconds("interval", get("interval"), positive=True),
        target_duration=_seconds("target-duration", get("target-duration"), positive=True),
        scale_down_delay=_seconds("scale-down-delay", get("scale-down-delay"), positive=False),
        orphan_grace=_seconds("orphan-grace", get("orphan-grace"), positive=True),
        retire_timeout=_seconds("retire-timeout", get("retire-timeout"), positive=True),
        namespace=_text("namespace", get("namespace")),
        deployment=_text("deployment", get("deployment")),
        selector=_text("selector", get("selector")),
        # empty means the Kubernetes default, which adaptive.yaml holds
        service_account_dir=_text("kubernetes.service-account-dir", get("service-account-dir"))
        or str(reference()["adaptive.kubernetes.service-account-dir"].default),
        worker_memory_limit=memory_limit,
        worker_nanny=_bool("local.worker-nanny", get("worker-nanny")),
        worker_threads=_int("worker-threads", get("worker-threads"), 1),
        node_packing=_bool("node-packing", get("node-packing")),
        worker_group=_text("worker-group", get("worker-group")) or "",
        not_ready_timeout=tunable("not-ready-timeout"),
        settle_timeout=tunable("settle-timeout"),
        poll_interval=tunable("poll-interval"),
        request_timeout=tunable("request-timeout"),
        retry_budget=tunable("retry-budget"),
    )
    if backend == "kubernetes":
        for key in ("namespace", "deployment", "selector"):
            if getattr(settings, key) is None:
                raise SettingsError(key, None, "is required with --backend kubernetes")
    if not settings.worker_group:
        default = settings.deployment if backend == "kubernetes" else "local"
        settings = dataclasses.replace(settings, worker_group=str(default))
    return settings
