"""The stack's settings that are the preload's own: the scheduled minimum (validated with the preload's
parser) and the pass-through options (dask_adaptive/options.py rows with stack=True), validated at preview
by the preload's own `resolve`, so a bad value fails `pulumi preview`, not the scheduler pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from dask_adaptive.options import BOOL, BY_FIELD, DURATION, INT, OPTIONS, command_line_value
from infra.config.reader import Field, Section

PASS_THROUGH = tuple(o for o in OPTIONS if o.stack)


def min_workers_schedule(field: Field, max_workers: int) -> str:
    """Validated here with the preload's own parser, so a bad schedule fails `pulumi preview`, not the pod."""
    from dask_adaptive.schedule import parse_schedule  # stdlib only, like dask_adaptive.command

    text = (field.optional_string() or "").strip()
    try:
        schedule = parse_schedule(text)
    except ValueError as exc:
        raise field.fail(str(exc)) from exc
    if schedule.highest > max_workers:
        raise field.fail(f"a window asks for {schedule.highest} workers, above maxWorkers ({max_workers})")
    return str(schedule)


def preload_options(s: Section) -> Mapping[str, Any]:
    """The pass-through options the stack sets, validated now by the preload's own parser (so a bad
    value fails `pulumi preview`, not the scheduler pod), by Python name for `PreloadArgs`."""
    from dask_adaptive.config import SettingsError, resolve

    given: dict[str, Any] = {}
    for option in PASS_THROUGH:
        field = s[option.stack_key]
        if field.value is None:
            continue
        if option.kind == BOOL:
            given[option.field] = field.boolean()
        elif option.kind == DURATION:
            given[option.field] = field.seconds(0, 366 * 86_400)
        elif option.kind == INT:
            given[option.field] = field.integer()
        else:
            given[option.field] = field.string()
    by_key = {o.key: o for o in PASS_THROUGH}
    try:
        resolve({name: command_line_value(BY_FIELD[name], value) for name, value in given.items()})
    except SettingsError as exc:
        option = by_key.get(exc.key)
        if option is None:
            raise
        raise s[option.stack_key].fail(str(exc).split(" is invalid: ", 1)[-1]) from exc
    return MappingProxyType(given)
