"""Pure tests: worker <-> unit reconciliation and settings validation."""

from __future__ import annotations

import dask.config
import pytest

from dask_adaptive.backends.base import Phase, Unit
from dask_adaptive.config import SettingsError, resolve
from dask_adaptive.reconcile import reconcile


def rec(now, units, workers, known=None, no_worker=None, gone=None):
    return reconcile(
        now,
        units,
        workers,
        known if known is not None else {u.name for u in units} | set(workers),
        no_worker or {},
        gone or {},
        orphan_grace=60.0,
        gone_grace=5.0,
    )


def test_unit_without_worker_becomes_orphan_after_grace():
    units = [Unit("a", Phase.RUNNING), Unit("b", Phase.STARTING), Unit("c", Phase.RUNNING)]
    first = rec(0.0, units, ["c"])
    assert first.orphans == () and set(first.no_worker_since) == {"a", "b"}
    later = rec(59.0, units, ["c"], no_worker=first.no_worker_since)
    assert later.orphans == ()
    later = rec(60.0, units, ["c"], no_worker=first.no_worker_since)
    assert later.orphans == ("a", "b")


def test_pending_and_terminating_units_are_not_orphans():
    units = [Unit("p", Phase.PENDING), Unit("t", Phase.TERMINATING)]
    assert rec(1000.0, units, [], no_worker={"p": 0.0, "t": 0.0}).orphans == ()


def test_worker_that_comes_back_resets_the_clock():
    units = [Unit("a", Phase.RUNNING)]
    first = rec(0.0, units, [])
    back = rec(30.0, units, ["a"], no_worker=first.no_worker_since)
    assert back.no_worker_since == {}
    again = rec(70.0, units, [], no_worker=back.no_worker_since)
    assert again.orphans == ()


def test_worker_whose_unit_is_gone_is_dropped_after_grace():
    first = rec(0.0, [], ["gone", "foreign"], known={"gone"})
    assert first.unitless == ()
    later = rec(5.0, [], ["gone", "foreign"], known={"gone"}, gone=first.unit_gone_since)
    assert later.unitless == ("gone",)  # a worker we never started is never touched


def test_terminating_unit_still_counts_as_present():
    units = [Unit("t", Phase.TERMINATING)]
    assert rec(100.0, units, ["t"], gone={"t": 0.0}).unitless == ()


@pytest.fixture
def clean_config():
    with dask.config.set({}):
        yield


def test_defaults(clean_config):
    s = resolve({})
    expected = ("local", 0, 10, 1.0, 30.0)
    assert (s.backend, s.min_workers, s.max_workers, s.interval, s.scale_down_delay) == expected
    assert s.service_account_dir == "/var/run/secrets/kubernetes.io/serviceaccount"


def test_config_and_option_precedence(clean_config):
    with dask.config.set({"adaptive.min-workers": 2, "adaptive.scale-down-delay": "1m"}):
        s = resolve({"max_workers": "4"})
        assert (s.min_workers, s.max_workers, s.scale_down_delay) == (2, 4, 60.0)
        assert resolve({"min_workers": "0"}).min_workers == 0


KUBE_OPTIONS = {"backend": "kubernetes", "namespace": "n", "deployment": "d", "selector": "app=w"}


@pytest.mark.parametrize(
    ("options", "config", "threads"),
    [
        ({}, {}, 1),  # local default: the local backend starts its workers with this many threads
        ({"worker_threads": "4"}, {}, 4),  # one knob: the local backend's workers get these threads
        ({}, {"adaptive.worker-threads": 3}, 3),
        (KUBE_OPTIONS, {}, 1),  # kubernetes, not given: distributed's behaviour (cores = workers)
        ({**KUBE_OPTIONS, "worker_threads": "4"}, {}, 4),
        (KUBE_OPTIONS, {"adaptive.worker-threads": 8}, 8),
        ({**KUBE_OPTIONS, "worker_threads": "2"}, {"adaptive.worker-threads": 8}, 2),  # the option wins
    ],
)
def test_worker_threads(clean_config, options, config, threads):
    with dask.config.set(config):
        assert resolve(options).worker_threads == threads


def test_kubernetes_config_key(clean_config):
    with dask.config.set({"adaptive.kubernetes.service-account-dir": "/sa"}):
        s = resolve({"backend": "kubernetes", "namespace": "n", "deployment": "d", "selector": "app=w"})
        assert s.service_account_dir == "/sa"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"min_workers": "-1"}, "min-workers"),
        ({"min_workers": "1.5"}, "min-workers"),
        ({"max_workers": "0"}, "max-workers"),
        ({"min_workers": "3", "max_workers": "2"}, "max-workers"),
        ({"interval": "0s"}, "interval"),
        ({"interval": "soon"}, "interval"),
        ({"scale_down_delay": "-5s"}, "scale-down-delay"),
        ({"target_duration": "nan"}, "target-duration"),
        ({"backend": "kubernetes"}, "namespace"),
        ({"backend": "kubernetes", "namespace": "n"}, "deployment"),
        ({"backend": "kubernetes", "namespace": "n", "deployment": "d"}, "selector"),
        ({"backend": "yarn"}, "backend"),
        ({"worker_memory_limit": "lots"}, "local.worker-memory-limit"),
        ({"worker_nanny": "sometimes"}, "local.worker-nanny"),
        ({"worker_threads": "0"}, "worker-threads"),
        ({"worker_threads": "four"}, "worker-threads"),
        ({**KUBE_OPTIONS, "worker_threads": "0"}, "worker-threads"),
    ],
)
def test_invalid_settings_name_the_key(clean_config, options, key):
    with pytest.raises(SettingsError) as info:
        resolve(options)
    assert info.value.key == key
    assert str(info.value).startswith(f"adaptive.{key}=")
