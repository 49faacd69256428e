"""Metrics where teams already look (`dask.monitoring`): the PodMonitor and the Grafana dashboard ConfigMap
(plain dicts), and the component step that creates them. The NetworkPolicy letting only the named
Prometheus namespaces scrape is `network_policies.metrics_policy`.

The scheduler serves `/metrics` on its dashboard port (the preload's metrics among distributed's), every
worker on its own dashboard port; both containers name that port `http-dashboard`, so one endpoint of one
PodMonitor selects both. The dashboard is plain HTTP on both (no TLS is configured for it).
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from infra.config.settings import DaskSettings
from infra.k8s import dask_objects as kd
from infra.k8s.dask_objects import Names
from infra.k8s.network_policies import stack_pod_labels
from infra.k8s.objects import create

POD_MONITOR_API = "monitoring.coreos.com/v1"
POD_MONITOR_CRD = "podmonitors.monitoring.coreos.com"
METRICS_PORT_NAME = "http-dashboard"  # the scheduler's and the workers' container port name
METRICS_PORTS = (kd.DASHBOARD_PORT, kd.WORKER_DASHBOARD_PORT)
DASHBOARD_FILE = Path(__file__).parent / "dashboards" / "dask-adaptive.json"  # python -m infra.k8s.dashboard
DASHBOARD_LABEL = {"grafana_dashboard": "1"}  # the Grafana chart's sidecar picks these ConfigMaps up
COMPONENT_LABEL = "app.kubernetes.io/component"


def pod_monitor(settings: DaskSettings, names: Names) -> dict:
    """Scrape the scheduler's and the workers' `/metrics` (the Dask namespace only), keeping each pod's
    component as a target label."""
    metadata = kd.object_meta("dask", names, "monitoring", settings.dask_version)
    metadata["labels"] = {**metadata["labels"], **settings.monitoring.pod_monitor_labels}
    return {
        "apiVersion": POD_MONITOR_API,
        "kind": "PodMonitor",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": stack_pod_labels(names)},
            "namespaceSelector": {"matchNames": [names.namespace]},
            "podTargetLabels": [COMPONENT_LABEL],
            "podMetricsEndpoints": [
                {"port": METRICS_PORT_NAME, "path": "/metrics", "scheme": "http", "interval": "30s"}
            ],
        },
    }


def dashboard_configmap(settings: DaskSettings, names: Names) -> dict:
    """The committed dashboard JSON, where Grafana's sidecar looks (`dashboardNamespace`, or the Dask one)."""
    metadata = kd.object_meta("dask-adaptive-dashboard", names, "monitoring", settings.dask_version)
    metadata["namespace"] = settings.monitoring.dashboard_namespace or names.namespace
    metadata["labels"] = {**metadata["labels"], **DASHBOARD_LABEL}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {DASHBOARD_FILE.name: DASHBOARD_FILE.read_text()},
    }


def create_monitoring(
    name: str, settings: DaskSettings, names: Names, opts: pulumi.ResourceOptions
) -> list[pulumi.Resource]:
    """What `dask.monitoring` asks for (nothing by default); `opts` parents them after the namespace."""
    made: list[pulumi.Resource] = []
    if settings.monitoring.pod_monitor:
        manifest = pod_monitor(settings, names)
        made.append(
            k8s.apiextensions.CustomResource(
                f"{name}-pod-monitor",
                api_version=manifest["apiVersion"],
                kind=manifest["kind"],
                metadata=manifest["metadata"],
                spec=manifest["spec"],
                opts=opts,
            )
        )
    if settings.monitoring.grafana_dashboard:
        made.append(create(f"{name}-grafana-dashboard", dashboard_configmap(settings, names), opts))
    return made
