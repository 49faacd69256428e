"""The one config reader: raw CLI values in, typed values out, every error naming the full key.

Values arrive as the CLI passes them: strings ("3", "true", JSON text), and JSON objects whose scalars
may themselves be strings (`pulumi config set --path` stores strings). Every layer's keys are read with
these getters, so "true", 3.0 or "0" mean the same wherever they are set.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pulumi

from infra.errors import ConfigError
from infra.facts.quantity import MIB, parse_cpu_millicores, parse_go_duration_seconds, parse_memory_bytes

PROJECT = "adaptive-dask"
# Every key of the project's namespace; anything else there is a typo (checked before anything is read).
TOP_LEVEL_KEYS = (
    "target", "production", "namePrefix", "tags", "network", "cluster", "systemNodeGroup", "workerGroups",
    "dask", "autoscaler", "kubeContext", "images", "budget",
)  # fmt: skip


def key(name: str) -> str:
    """The full key of a top-level name: `adaptive-dask:<name>`."""
    return f"{PROJECT}:{name}"


class Field:
    """One value at a full config key (e.g. `adaptive-dask:workerGroups[0].minSize`) with typed getters."""

    def __init__(self, key: str, value: Any) -> None:
        self.key, self.value = key, value

    def fail(self, allowed: str) -> ConfigError:
        return ConfigError(self.key, self.value, allowed)

    def string(self) -> str:
        if not isinstance(self.value, str):
            raise self.fail("must be a string")
        return self.value

    def optional_string(self) -> str | None:
        return None if self.value is None else self.string()

    def choice(self, allowed: tuple[str, ...]) -> str:
        if self.value not in allowed:
            raise self.fail(f"must be one of {', '.join(allowed)}")
        return str(self.value)

    def boolean(self) -> bool:
        if isinstance(self.value, bool):
            return self.value
        if isinstance(self.value, str) and self.value.strip().lower() in ("true", "false"):
            return self.value.strip().lower() == "true"
        raise self.fail("must be true or false")

    def integer(self, lo: int | None = None, hi: int | None = None) -> int:
        value = self.value
        if isinstance(value, bool):
            raise self.fail("must be a whole number")
        numeric_text = isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value)
        if numeric_text or (isinstance(value, float) and value.is_integer()):
            value = int(value)
        if not isinstance(value, int):
            raise self.fail("must be a whole number")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"between {lo} and {hi}" if lo is not None and hi is not None else f">= {lo}"
            raise self.fail(f"must be a whole number {bounds}")
        return value

    def seconds(self, lo: float, hi: float) -> float:
        """Seconds as a number ('30', 2.5) or a Go duration ('90s', '2m')."""
        value = self.value
        try:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int | float) or re.fullmatch(r"[0-9]+(\.[0-9]+)?", str(value)):
                seconds = float(value)
            else:
                seconds = float(parse_go_duration_seconds(str(value)))
        except ValueError:
            raise self.fail("must be seconds (e.g. 30) or a duration like '90s', '2m'") from None
        if not math.isfinite(seconds) or not lo <= seconds <= hi:
            raise self.fail(f"must be between {lo:g}s and {hi:g}s")
        return seconds

    def go_duration(self, lo_s: int, hi_s: int) -> str:
        """A Go duration string, passed on as written (cluster-autoscaler parses it itself)."""
        try:
            seconds = parse_go_duration_seconds(self.value) if isinstance(self.value, str) else None
        except ValueError:
            seconds = None
        if seconds is None:
            raise self.fail("must be a Go duration such as '10m', '90s' or '1m30s'")
        if not Decimal(lo_s) <= seconds <= Decimal(hi_s):
            raise self.fail(f"must be between {lo_s}s and {hi_s}s")
        return self.value

    def cpu_millicores(self) -> int | None:
        """None only when unset: a zero is an error, never a request for the default."""
        if self.value is None:
            return None
        try:
            millicores = parse_cpu_millicores(str(self.value))
        except ValueError:
            raise self.fail("must be a CPU quantity such as '2', '1.5' or '500m'") from None
        if millicores <= 0:
            raise self.fail("must be more than 0 (leave it unset for the default)")
        return millicores

    def memory_mib(self) -> int | None:
        """None only when unset; whole MiB."""
        if self.value is None:
            return None
        try:
            amount = parse_memory_bytes(str(self.value))
        except ValueError:
            raise self.fail("must be a memory quantity such as '4Gi' or '512Mi'") from None
        if amount < MIB:
            raise self.fail("must be at least 1Mi (leave it unset for the default)")
        return amount // MIB

    def items(self) -> list[Field]:
        if not isinstance(self.value, list):
            raise self.fail("must be a list")
        return [Field(f"{self.key}[{i}]", v) for i, v in enumerate(self.value)]

    def strings(self, *, nonempty: bool = False, unique: bool = True) -> tuple[str, ...]:
        values = tuple(item.string() for item in self.items())
        if nonempty and not values:
            raise self.fail("must be a non-empty list")
        if unique and len(set(values)) != len(values):
            raise self.fail("must not contain duplicates")
        return values

    def mapping(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.fail("must be an object")
        return self.value

    def string_map(self) -> dict[str, str]:
        raw = self.mapping()
        for k, v in raw.items():
            if not isinstance(v, str):
                raise Field(f"{self.key}.{k}", v).fail("must be a string")
        return dict(raw)


class Section:
    """A JSON object config value: merges defaults, rejects unknown fields (typos), hands out Fields.

    A default of None marks a field whose default depends on other values (`has` tells if it was set)."""

    def __init__(self, key: str, value: Any, defaults: Mapping[str, Any]) -> None:
        raw = {} if value is None else Field(key, value).mapping()
        unknown = sorted(set(raw) - set(defaults))
        if unknown:
            raise ConfigError(
                f"{key}.{unknown[0]}", raw[unknown[0]], f"unknown field; known: {', '.join(defaults)}"
            )
        self.key, self.raw, self.values = key, raw, {**defaults, **raw}

    def __getitem__(self, name: str) -> Field:
        return Field(f"{self.key}.{name}", self.values[name])

    def has(self, name: str) -> bool:
        return self.raw.get(name) is not None

    def with_default(self, name: str, default: Any) -> Field:
        """The field, or `default` for a field whose default depends on other values (unset = None).
        Only an unset field takes the default: a 0 the user wrote stays 0 and meets the validator."""
        return Field(f"{self.key}.{name}", self.values[name] if self.has(name) else default)


def decode_json(full_key: str, text: str | None, default: Any) -> Any:
    """The CLI hands objects and lists over as JSON text; an empty value means unset."""
    if text is None or text == "":
        return default
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(full_key, text, f"must be valid JSON: an object or a list ({exc.msg})") from None


class ConfigReader:
    """Reads raw CLI strings for one namespace; JSON values are decoded with errors naming the key."""

    def __init__(self, namespace: str = PROJECT) -> None:
        self.namespace = namespace
        self._config = pulumi.Config(namespace)

    def full_key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def raw(self, key: str, default: Any) -> Field:
        text = self._config.get(key)
        return Field(self.full_key(key), default if text is None else text)

    def json(self, key: str, default: Any) -> Field:
        return Field(self.full_key(key), decode_json(self.full_key(key), self._config.get(key), default))

    def section(self, key: str, defaults: Mapping[str, Any]) -> Section:
        return Section(self.full_key(key), self.json(key, {}).value, defaults)

    def is_set(self, key: str) -> bool:
        return self._config.get(key) not in (None, "")


# Keys this program reads in the providers' namespaces. Its providers are explicit (and the stack files
# disable the default ones), so any other key there is silently ignored: `aws:regoin` would deploy to the
# default region, `kubernetes:context` to the current context.
PROVIDER_KEYS: dict[str, tuple[str, ...]] = {"aws": ("region",), "kubernetes": ()}
PROVIDER_KEY_HINTS = {"kubernetes:context": f"{PROJECT}:kubeContext", "aws:defaultTags": f"{PROJECT}:tags"}


def stack_config() -> dict[str, Any]:
    """Every key set in the stack, by full key (secret values masked). The Python SDK has no public
    call that lists config keys: the CLI passes the whole config as JSON in PULUMI_CONFIG (read by
    `get_config_env`), tests and the automation API set it with `set_all_config` (`CONFIG`)."""
    from pulumi.runtime import config as runtime_config  # the SDK's own store of the stack config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {k: "[secret]" if runtime_config.is_config_secret(k) else v for k, v in merged.items()}


def project_config() -> dict[str, Any]:
    """Every key set in the project's namespace, without the namespace."""
    return {k.split(":", 1)[1]: v for k, v in stack_config().items() if k.startswith(f"{PROJECT}:")}


def check_provider_keys(config: Mapping[str, Any]) -> None:
    """A key in a provider namespace the program does not read is refused, naming what it reads."""
    for full_key in sorted(config):
        namespace, _, name = full_key.partition(":")
        known = PROVIDER_KEYS.get(namespace)
        if known is None or name in known:
            continue
        near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        hint = PROVIDER_KEY_HINTS.get(full_key) or (f"{namespace}:{near[0]}" if near else None)
        reads = ", ".join(f"{namespace}:{k}" for k in known) or "nothing"
        raise ConfigError(
            full_key,
            config[full_key],
            f"not read by this program (its {namespace} provider is explicit; it reads {reads} there)"
            + (f"; did you mean {hint}?" if hint else ""),
        )


def check_unknown_keys(config: Mapping[str, Any]) -> None:
    """A typo in a top-level key would silently deploy the defaults: refuse it, naming the nearest key."""
    for name in sorted(set(config) - set(TOP_LEVEL_KEYS)):
        by_lower = {k.lower(): k for k in TOP_LEVEL_KEYS}
        near = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
        hint = f"did you mean {key(by_lower[near[0]])}? " if near else ""
        known = ", ".join(TOP_LEVEL_KEYS)
        raise ConfigError(key(name), config[name], f"unknown key; {hint}known: {known}")
