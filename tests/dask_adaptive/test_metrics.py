"""The controller's numbers on prometheus_client's registry (what distributed's /metrics serves)."""

from __future__ import annotations

import sys

import prometheus_client

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
