"""The options table (dask_adaptive/options.py) is the one place the preload's options are declared.

Everything else is derived from it and read back here: the click options, the `PreloadArgs` fields, the
command line the Pulumi program ships (parsed back by the preload's own parser), the dask config keys,
the environment names, and the stack keys of the Pulumi program (one vocabulary across the boundary).
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from dask_adaptive.command import WORKER_SIGTERM_TIMEOUT, scheduler_command, worker_environment
from dask_adaptive.config import reference, resolve
from dask_adaptive.options import BOOL, BY_NAME, DURATION, INT, OPTIONS, PRELOAD, PreloadArgs
from dask_adaptive.preload import dask_setup

# a value for every option, each different from its default, written as the Python side holds it
EVERY_VALUE = {
    "backend": "kubernetes",
    "min_workers": 2,
    "min_workers_schedule": "Mon-Fri 08:00-18:00 Europe/London=3",
    "max_workers": 7,
    "interval": 0.25,
    "target_duration": 12.5,
    "scale_down_delay": 90.0,
    "orphan_grace": 120.0,
    "retire_timeout": 240.0,
    "worker_threads": 4,
    "node_packing": False,
    "worker_group": "spot+ondemand",
    "namespace": "team-a",
    "deployment": "dask-worker",
    "selector": "app=dask-worker,tier=w",
    "service_account_dir": "/sa",
    "worker_memory_limit": "3GiB",
    "worker_nanny": True,
}


def parse(argv: list[str]):
    return resolve(dask_setup.make_context("dask_setup", list(argv)).params)


def test_every_option_round_trips_through_the_preloads_own_parser():
    assert set(EVERY_VALUE) == {f.name for f in dataclasses.fields(PreloadArgs)}
    args = PreloadArgs(**EVERY_VALUE)
    settings = parse(args.argv())
    for field, value in EVERY_VALUE.items():
        got = getattr(settings, field)
        assert (str(got) if field == "min_workers_schedule" else got) == value, field


def test_the_scheduler_command_puts_the_preload_flags_after_the_preload():
    argv = scheduler_command(PreloadArgs(max_workers=3), port=8786, dashboard_address=":8787", tls=True)
    assert argv[: argv.index(PRELOAD) + 1] == [
        "dask",
        "scheduler",
        "--port",
        "8786",
        "--dashboard-address",
        ":8787",
        "--protocol",
        "tls",
        "--preload",
        PRELOAD,
    ]
    assert argv[argv.index(PRELOAD) + 1 :] == ["--max-workers", "3"]
    assert parse(argv[argv.index(PRELOAD) + 1 :]).max_workers == 3


def test_names_derive_from_each_other():
    keys = reference()
    click_names = [p.name for p in dask_setup.params]
    assert click_names == [o.field for o in OPTIONS]
    for option in OPTIONS:
        assert option.field == option.name.replace("-", "_") and option.flag == f"--{option.name}"
        assert option.key.rsplit(".", 1)[-1] == option.name
        entry = keys[f"adaptive.{option.key}"]
        assert entry.option == option.flag and entry.env == "DASK_ADAPTIVE__" + "__".join(
            p.upper().replace("-", "_") for p in option.key.split(".")
        )


def test_misspelt_or_mistyped_values_fail_where_they_are_written():
    with pytest.raises(TypeError):
        PreloadArgs(maximum=3)  # the old name: there is one name per fact now
    with pytest.raises(TypeError):
        PreloadArgs(max_workers="3").argv()  # an int option takes an int
    with pytest.raises(TypeError):
        PreloadArgs(node_packing="no").argv()
    with pytest.raises(ValueError, match="--backend takes one of kubernetes, local"):
        PreloadArgs(backend="yarn").argv()
    with pytest.raises(TypeError, match="unknown preload options"):
        resolve({"maximum": "3"})


def test_kinds_are_what_config_reads():
    kinds = {o.name: o.kind for o in OPTIONS}
    assert kinds["max-workers"] == INT and kinds["scale-down-delay"] == DURATION
    assert kinds["node-packing"] == BOOL


def test_the_workers_environment_is_named_from_its_config_key():
    env = worker_environment(95)
    assert env == {"DASK_ADAPTIVE__WORKER__SIGTERM_TIMEOUT": "95s"}
    assert reference()[f"adaptive.{WORKER_SIGTERM_TIMEOUT}"].env in env


def test_one_vocabulary_with_the_stack():
    """Each option the Pulumi program takes from the stack has the stack key that is its camelCase."""
    from infra.config.kubernetes import DASK_DEFAULTS

    derived_by_the_program = {"backend", "namespace", "deployment", "selector"}
    from_the_stack = {"min-workers", "max-workers", "min-workers-schedule", "interval", "target-duration"}
    from_the_stack |= {"scale-down-delay", "worker-threads"}
    from_the_stack |= {o.name for o in OPTIONS if o.stack}  # passed through with no infra code
    for name in from_the_stack:
        camel = re.sub(r"-([a-z])", lambda m: m[1].upper(), name)
        assert camel in DASK_DEFAULTS, camel
        assert BY_NAME[name].stack_key == camel
    assert (from_the_stack | derived_by_the_program) <= {o.name for o in OPTIONS}
