"""The Grafana dashboard queries only metrics that exist: every metric name its PromQL selects (parsed with
promql-parser) is in the /metrics of a live scheduler with the preload and of a live worker (real processes,
local backend), after a little work. The committed JSON is the generator's output, and loads in the SDK."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
from distributed import Client
from grafana_foundation_sdk.models.dashboard import Dashboard

from infra.k8s import dashboard
from infra.k8s.monitoring import DASHBOARD_FILE
from testbed.dask.procs import http_get, scheduler, wait_for

# Grafana's variables, as Grafana substitutes them before the query reaches Prometheus
VARIABLES = {"$__rate_interval": "1m", "$__range": "6h", "$namespace": ".*"}
SUFFIXES = ("_bucket", "_sum", "_count", "_created", "_total")


def expressions(data: dict) -> list[str]:
    return [t["expr"] for p in data["panels"] for t in p.get("targets", [])]


def selected_names(expr: str) -> set[str]:
    """Every metric name a query selects (vector and matrix selectors, at any depth of the tree)."""
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)
            return
        for attribute in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attribute, None)
            if child is not None:
                walk(child)
        for child in getattr(node, "args", None) or []:
            walk(child)

    walk(promql_parser.parse(expr))
    return names


def exposed(text: str) -> set[str]:
    """Sample names of a /metrics page, and for counters/histograms the family's base name too."""
    samples = {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M)}
    return samples | {s.removesuffix(suffix) for s in samples for suffix in SUFFIXES if s.endswith(suffix)}


def test_the_committed_dashboard_is_the_generators_output_and_loads_in_the_sdk():
    regenerate = "python -m infra.k8s.dashboard > infra/k8s/dashboards/dask-adaptive.json"
    assert DASHBOARD_FILE.read_text() == dashboard.to_json(), f"stale: run {regenerate}"
    data = json.loads(DASHBOARD_FILE.read_text())
    model = Dashboard.from_json(data)
    assert model.uid == "adaptive-dask" and model.title == dashboard.TITLE
    round_trip = json.loads(json.dumps(model.to_json(), default=lambda o: o.to_json()))
    assert [p["title"] for p in round_trip["panels"]] == [p["title"] for p in data["panels"]]
    assert expressions(round_trip) == expressions(data)
    ids = [p["id"] for p in data["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in data["panels"]:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(set(refs)) == len(refs) and all(refs), panel["title"]


def test_the_walker_finds_every_selector():
    """The checker below must not pass by finding nothing: nested calls, binary operators, aggregations."""
    expr = 'sum by (g) (increase(a_total{x="1"}[5m])) / on() group_left sum(b) + rate(c_bucket[$__range])'
    assert selected_names(expr) == {"a_total", "b", "c_bucket"}


def test_every_metric_of_the_dashboard_is_on_live_metrics(tmp_path: Path):
    options = ["--backend", "local", "--min-workers", "1", "--max-workers", "2", "--interval", "200ms"]
    options += ["--worker-memory-limit", "512MiB", "--worker-nanny", "true"]  # the pods' layout
    with scheduler(tmp_path, *options) as s, Client(s.address, timeout=30) as client:
        wait_for(lambda: client.scheduler_info()["workers"], 60, "the preload's first worker")
        assert client.gather(client.map(lambda x: x * 2, range(20))) == [x * 2 for x in range(20)]
        info = client.scheduler_info()
        status, scheduler_text = http_get(f"http://127.0.0.1:{info['services']['dashboard']}/metrics")
        assert status == 200
        [worker] = info["workers"].values()
        status, worker_text = http_get(f"http://{worker['host']}:{worker['services']['dashboard']}/metrics")
        assert status == 200
    live = exposed(scheduler_text) | exposed(worker_text)
    data = json.loads(DASHBOARD_FILE.read_text())
    used = {name for expr in expressions(data) for name in selected_names(expr)}
    assert len(used) >= 15, used
    assert used <= live, f"not on the live /metrics: {sorted(used - live)}"
    # the preload's labelled counters carry their labels live
    seconds = re.search(r'^dask_adaptive_worker_seconds_total\{group="local"\} (\S+)$', scheduler_text, re.M)
    assert seconds and float(seconds.group(1)) > 0, "the live worker's seconds were counted"
    assert re.search(
        r'^dask_adaptive_decisions_total\{decision="\w+",reason="[a-z-]+"\} ', scheduler_text, re.M
    )
    # the variable's query too
    assert "dask_adaptive_requested_workers" in live
