"""The controller's numbers on prometheus_client's registry (what distributed's /metrics serves)."""

from __future__ import annotations

import sys

import prometheus_client
import pytest

from dask_adaptive.metrics import COUNTERS, GAUGES, Stats, register, unregister


def test_collector_exports_every_number_live():
    stats = Stats()
    handle = register(stats)
    try:
        stats.desired, stats.retirements = 3, 2
        text = prometheus_client.generate_latest().decode()
        assert "dask_adaptive_desired_workers 3.0" in text
        assert "dask_adaptive_retirements_total 2.0" in text
        for name in GAUGES:
            assert f"dask_adaptive_{name}_workers " in text
        for name in COUNTERS:
            assert f"dask_adaptive_{name}_total " in text
    finally:
        unregister(handle)
    assert "dask_adaptive_desired_workers" not in prometheus_client.generate_latest().decode()


def test_without_prometheus_client_nothing_breaks(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now raises ImportError
    handle = register(Stats())
    assert handle is None
    unregister(handle)


def test_counts_are_added_by_name_and_only_to_counters():
    """The executor's counts reach the controller's stats through `Stats.add`, its one way in."""
    stats = Stats()
    stats.add(retirements=2, api_errors=1)
    stats.add(retirements=1)
    assert (stats.retirements, stats.api_errors) == (3, 1)
    with pytest.raises(KeyError, match="not a counter: desired, retirment"):
        stats.add(retirements=5, desired=1, retirment=1)  # a gauge, and a typo
    assert (stats.retirements, stats.desired) == (3, 0), "nothing added"
