"""adaptive.yaml is the one place for defaults and meanings: the keys the code reads, the code's own
fallbacks, the preload's --help and CONFIG.md must all agree with it."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dask.config
import pytest
from dask.utils import parse_timedelta

import dask_adaptive
from dask_adaptive.config import (
    CONFIG_ONLY_KEYS,
    SettingsError,
    config_markdown,
    option_help,
    reference,
    resolve,
)
from dask_adaptive.options import OPTIONS

PACKAGE = Path(dask_adaptive.__file__).parent
# a complete literal key; f-strings ("adaptive.{...}") are covered by OPTIONS / CONFIG_ONLY_KEYS
LITERAL_KEY = re.compile(r"""["'](adaptive\.[a-z0-9-]+(?:\.[a-z0-9-]+)*)["']""")
KUBE = {"backend": "kubernetes", "namespace": "n", "deployment": "d", "selector": "app=w"}
TUNABLES = ("not-ready-timeout", "settle-timeout", "poll-interval", "request-timeout", "retry-budget")


def keys_in_source() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        found.update(LITERAL_KEY.findall(path.read_text()))
    return found - {"adaptive.yaml"}  # the file's name, not a key


def keys_by_mapping() -> set[str]:
    return {f"adaptive.{key}" for key in (*(o.key for o in OPTIONS), *CONFIG_ONLY_KEYS.values())}


def seconds(key: str) -> float:
    return float(parse_timedelta(reference()[key].default, default="seconds"))


@pytest.fixture
def reads(monkeypatch):
    """Every dask config key read through dask.config.get while the test runs."""
    seen: list[str] = []
    original = dask.config.get

    def spy(key: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(key)
        return original(key, *args, **kwargs)

    monkeypatch.setattr(dask.config, "get", spy)
    return seen


def test_every_key_the_code_reads_is_in_adaptive_yaml_and_every_key_there_is_read(reads):
    from dask_adaptive.worker import sigterm_timeout

    resolve({})
    resolve(KUBE)
    sigterm_timeout()
    read_at_runtime = {k for k in reads if k.startswith("adaptive.")}
    documented = set(reference())
    read = keys_in_source() | keys_by_mapping() | read_at_runtime
    assert read - documented == set(), "read by the code but missing from adaptive.yaml"
    assert documented - read == set(), "documented in adaptive.yaml but read by nothing"
    assert read_at_runtime >= {f"adaptive.kubernetes.{k}" for k in TUNABLES}


def test_backends_read_no_dask_config_they_take_validated_values(reads):
    """Settings are read once, by config.resolve; building either backend reads nothing more."""
    from dask_adaptive.preload import make_backend

    kube, local = resolve(KUBE), resolve({})
    reads.clear()
    make_backend(kube, scheduler=None)
    make_backend(local, scheduler=type("Scheduler", (), {"address": "tcp://127.0.0.1:1", "workers": {}}))
    assert reads == []


def test_code_side_fallbacks_equal_the_yaml_defaults():
    """Values the code uses when nothing is configured, read back, against adaptive.yaml."""
    from dask_adaptive.backends.kubernetes.api import KubeApi, RetryPolicy, retry_policy
    from dask_adaptive.backends.local import LocalBackend
    from dask_adaptive.preload import make_backend
    from dask_adaptive.worker import sigterm_timeout

    ref = reference()
    s = resolve({})
    assert (s.backend, s.min_workers, s.max_workers) == tuple(
        ref[f"adaptive.{k}"].default for k in ("backend", "min-workers", "max-workers")
    )
    for field in ("interval", "target-duration", "scale-down-delay", "orphan-grace"):
        assert getattr(s, field.replace("-", "_")) == seconds(f"adaptive.{field}"), field
    for field, key in CONFIG_ONLY_KEYS.items():
        assert getattr(s, field.replace("-", "_")) == seconds(f"adaptive.{key}"), field
    assert s.service_account_dir == ref["adaptive.kubernetes.service-account-dir"].default
    assert s.service_account_dir == "/var/run/secrets/kubernetes.io/serviceaccount"
    local = LocalBackend("tcp://127.0.0.1:1")
    assert (local.nthreads, local.memory_limit, local.nanny) == (
        s.worker_threads,
        s.worker_memory_limit,
        s.worker_nanny,
    )
    assert (s.worker_threads, s.worker_memory_limit, s.worker_nanny) == (
        ref["adaptive.worker-threads"].default,
        ref["adaptive.local.worker-memory-limit"].default,
        ref["adaptive.local.worker-nanny"].default,
    )
    kube = make_backend(resolve(KUBE), scheduler=None)
    expected = (s.not_ready_timeout, s.settle_timeout, s.poll_interval)
    assert (kube.not_ready_timeout, kube.settle_timeout, kube.poll_interval) == expected == (45.0, 30.0, 0.5)
    assert kube.service_account_dir == s.service_account_dir
    defaults = RetryPolicy()
    assert (defaults.request_timeout, defaults.budget) == (s.request_timeout, s.retry_budget) == (10.0, 20.0)
    assert retry_policy(s.request_timeout, s.retry_budget) == defaults == kube.retry_policy
    assert KubeApi("http://127.0.0.1:1", "token").policy == defaults  # a client built without a policy
    assert sigterm_timeout() == seconds("adaptive.worker.sigterm-timeout") == 25.0


def test_every_key_has_a_one_line_meaning_and_options_show_it_in_help():
    from click.testing import CliRunner

    from dask_adaptive.preload import dask_setup

    for entry in reference().values():
        assert entry.meaning and "\n" not in entry.meaning, entry.key
    options = {p.name.replace("_", "-"): p for p in dask_setup.params}
    assert list(options) == [o.name for o in OPTIONS]  # generated from the table, in its order
    for name, param in options.items():
        assert param.help == option_help(name)
    text = CliRunner().invoke(dask_setup, ["--help"], terminal_width=400).output
    assert "shrink only once the target stayed below for this long; then to its highest [30s]" in text


def test_config_md_is_the_table_of_adaptive_yaml():
    """CONFIG.md is checked in for the README; regenerate with `python -m dask_adaptive config-doc`."""
    text = (PACKAGE / "CONFIG.md").read_text()
    assert text == config_markdown(), "stale: python -m dask_adaptive config-doc > dask_adaptive/CONFIG.md"
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and "`adaptive." in line]
    table = {
        key.strip("`"): (option.strip("| `"), env.strip("`"), default.strip("`"))
        for option, key, env, default, _ in rows
    }
    assert set(table) == set(reference())
    for key, entry in reference().items():
        option, env, default = table[key]
        assert option == (entry.option or "—")
        assert env == entry.env
        assert default == ("—" if entry.default is None else str(entry.default))
    assert {f"adaptive.kubernetes.{name}" for name in TUNABLES} <= set(table)
    assert table["adaptive.kubernetes.not-ready-timeout"][2] == "45s"
    assert table["adaptive.kubernetes.poll-interval"][2] == "500ms"


def test_each_environment_variable_sets_its_key():
    for entry in reference().values():
        collected = dask.config.collect_env({entry.env: "from-env"})
        assert dask.config.get(entry.key, config=collected) == "from-env", entry.env


def test_kubernetes_tunables_are_validated_at_start_and_passed_to_the_backend():
    from dask_adaptive.preload import make_backend

    tunables = {
        "adaptive.kubernetes.not-ready-timeout": "2s",
        "adaptive.kubernetes.settle-timeout": "3s",
        "adaptive.kubernetes.poll-interval": "100ms",
        "adaptive.kubernetes.request-timeout": "1500ms",
        "adaptive.kubernetes.retry-budget": "1m",
    }
    with dask.config.set(tunables):
        settings = resolve(KUBE)
    backend = make_backend(settings, scheduler=None)  # built outside the config context: values passed in
    assert (backend.not_ready_timeout, backend.settle_timeout, backend.poll_interval) == (2.0, 3.0, 0.1)
    policy = backend.retry_policy
    assert (policy.request_timeout, policy.connect_timeout, policy.budget) == (1.5, 1.5, 60.0)
    with dask.config.set({"adaptive.kubernetes.settle-timeout": "soon"}), pytest.raises(SettingsError) as err:
        resolve(KUBE)
    assert err.value.key == "kubernetes.settle-timeout"
    assert str(err.value).startswith("adaptive.kubernetes.settle-timeout='soon' is invalid")


@pytest.mark.parametrize(
    ("option", "config", "expected"),
    [
        (None, None, True),  # adaptive.yaml's default
        ("false", None, False),
        ("True", None, True),
        ("no", True, False),  # the option wins over dask config
        (None, False, False),  # YAML gives a bool
        (None, "off", False),  # DASK_ADAPTIVE__NODE_PACKING gives a string
    ],
)
def test_node_packing_resolves_from_bools_and_strings(option, config, expected):
    settings = {} if config is None else {"adaptive.node-packing": config}
    with dask.config.set(settings):
        assert resolve({"node_packing": option}).node_packing is expected


@pytest.mark.parametrize("bad", ["maybe", "", 2])
def test_node_packing_refuses_other_values(bad):
    with pytest.raises(SettingsError) as err:
        resolve({"node_packing": bad})
    assert str(err.value) == f"adaptive.node-packing={bad!r} is invalid: must be true or false"


@pytest.mark.parametrize(
    ("option", "config", "expected"),
    [(None, None, False), ("true", None, True), (None, "yes", True), ("off", True, False)],
)
def test_worker_nanny_resolves_and_reaches_the_local_backend(option, config, expected):
    from dask_adaptive.preload import make_backend

    settings = {} if config is None else {"adaptive.local.worker-nanny": config}
    with dask.config.set(settings):
        resolved = resolve({"worker_nanny": option})
    scheduler = SimpleNamespace(address="tcp://127.0.0.1:1", workers={}, security=None)
    assert resolved.worker_nanny is expected
    assert make_backend(resolved, scheduler).nanny is expected


def test_minimum_schedule_resolves_from_option_or_config():
    assert resolve({}).min_workers_schedule.windows == ()  # default: none
    with dask.config.set({"adaptive.min-workers-schedule": "Mon-Fri 08:00-18:00 Europe/London=4"}):
        assert str(resolve({}).min_workers_schedule) == "Mon-Fri 08:00-18:00 Europe/London=4"
        option = resolve({"min_workers_schedule": "Sat 10:00-14:00 UTC=1"})  # the option wins
        assert str(option.min_workers_schedule) == "Sat 10:00-14:00 UTC=1"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("Mon-Fri 08:00-18:00 Europe/Londn=4", "window 'Mon-Fri 08:00-18:00 Europe/Londn=4': time zone"),
        ("Mon-Fri 8-18 UTC=4", "window 'Mon-Fri 8-18 UTC=4': not of the form"),
        (
            "00:00-24:00 UTC=1; Mon 08:00-18:00 UTC=11",
            "window 'Mon 08:00-18:00 UTC=11' asks for 11 workers, above adaptive.max-workers=10",
        ),
        (4, "must be a string"),
    ],
)
def test_minimum_schedule_refuses_bad_values_at_start(value, rule):
    with pytest.raises(SettingsError) as err:
        resolve({"min_workers_schedule": value})
    assert err.value.key == "min-workers-schedule"
    assert str(err.value).startswith(f"adaptive.min-workers-schedule={value!r} is invalid: {rule}")
