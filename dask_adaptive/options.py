"""The scheduler preload's options: one table, from which everything that names them is derived.

An option's name is its flag (`--max-workers`), its Python name (`max_workers`: a `PreloadSettings` field, a
`PreloadArgs` field, a click parameter), and, unless namespaced, its dask config key
(`adaptive.max-workers`, environment `DASK_ADAPTIVE__MAX_WORKERS`); the stack key of the Pulumi program is
the camelCase of the same words (`dask.maxWorkers`). The click options (preload.py), the validation
(config.py), CONFIG.md and the scheduler's command line the Pulumi program ships (`PreloadArgs.argv`,
command.py) all read this table, so none of them spells a flag.

Standard library only: the Pulumi program and the preload in the stock Dask image both import it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

BACKENDS = ("kubernetes", "local")
PRELOAD = "dask_adaptive.preload"

# How a value is written on the command line and read back by config.py.
INT, DURATION, BOOL, TEXT, SIZE = "int", "duration", "bool", "text", "size"
_PYTHON_TYPES = {INT: int, DURATION: float, BOOL: bool, TEXT: str, SIZE: str}


@dataclass(frozen=True)
class Option:
    name: str  # the flag without "--"; the Python name is the same with "_"
    kind: str  # INT, DURATION (seconds as a float on the Python side), BOOL, TEXT, SIZE
    section: str = ""  # dask config section under "adaptive." ("kubernetes", "local"), "" for top level
    choices: tuple[str, ...] = ()
    # A stack may set it as `dask.<camelCase>` and the Pulumi program passes it through as is (validated
    # at preview by this package's own `resolve`); options the program derives or sizes itself are False.
    stack: bool = False

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def field(self) -> str:
        return self.name.replace("-", "_")

    @property
    def stack_key(self) -> str:
        """The Pulumi stack key under `dask.`: the same words in camelCase (`orphan-grace` -> orphanGrace)."""
        head, *rest = self.name.split("-")
        return head + "".join(word.title() for word in rest)

    @property
    def key(self) -> str:
        """The dask config key under "adaptive."."""
        return f"{self.section}.{self.name}" if self.section else self.name


OPTIONS: tuple[Option, ...] = (
    Option("backend", TEXT, choices=BACKENDS),
    Option("min-workers", INT),
    Option("min-workers-schedule", TEXT),
    Option("max-workers", INT),
    Option("interval", DURATION),
    Option("target-duration", DURATION),
    Option("scale-down-delay", DURATION),
    Option("orphan-grace", DURATION, stack=True),
    Option("retire-timeout", DURATION, stack=True),
    Option("worker-threads", INT),
    Option("node-packing", BOOL, stack=True),
    Option("worker-group", TEXT),
    Option("namespace", TEXT),
    Option("deployment", TEXT),
    Option("selector", TEXT),
    Option("service-account-dir", TEXT, section="kubernetes"),
    Option("worker-memory-limit", SIZE, section="local"),
    Option("worker-nanny", BOOL, section="local"),
)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
BY_FIELD: dict[str, Option] = {o.field: o for o in OPTIONS}


def dask_env_name(key: str) -> str:
    """The environment variable dask reads for `adaptive.<key>` (upper case, `__` between levels)."""
    return "DASK_" + "__".join(part.upper().replace("-", "_") for part in f"adaptive.{key}".split("."))


def command_line_value(option: Option, value: Any) -> str:
    """A value as the preload's parser reads it back (config.py)."""
    if option.kind == BOOL:
        if not isinstance(value, bool):
            raise TypeError(f"{option.flag} takes a bool, got {value!r}")
        return "true" if value else "false"
    if option.kind == DURATION:
        seconds = float(value)
        if math.isnan(seconds) or math.isinf(seconds):
            raise ValueError(f"{option.flag} takes a finite number of seconds, got {value!r}")
        return f"{seconds:g}s"
    if option.kind == INT and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{option.flag} takes an int, got {value!r}")
    if option.choices and value not in option.choices:
        raise ValueError(f"{option.flag} takes one of {', '.join(option.choices)}, got {value!r}")
    return str(value)


def _argv(self: Any) -> list[str]:
    """The options given (not None), in the table's order, as `--name value` pairs."""
    out: list[str] = []
    for option in OPTIONS:
        value = getattr(self, option.field)
        if value is not None:
            out += [option.flag, command_line_value(option, value)]
    return out


# Values for the preload's options, one field per row of OPTIONS (None: not on the command line); built
# from the table so a new option needs no second declaration. A misspelt field is a TypeError.
PreloadArgs = dataclasses.make_dataclass(
    "PreloadArgs",
    [(o.field, _PYTHON_TYPES[o.kind] | None, dataclasses.field(default=None)) for o in OPTIONS],
    namespace={"argv": _argv, "__doc__": "Values for the preload's options (None: not given)."},
    frozen=True,
    kw_only=True,
)
