"""Metrics where teams already look (`dask.monitoring`): validated here, before anything is created.

A PodMonitor (Prometheus Operator) is made only when asked: without its CRD the apply fails, so the local
target checks the CRD on the user's cluster at preview (infra/k8s/live.py) and the aws target, whose
cluster the stack creates, documents that the operator must be installed first (docs/monitoring.md).
A PodMonitor without a Prometheus namespace allowed to scrape would be a silent failure (the NetworkPolicy
drops the scrapes), so `podMonitor: true` needs `prometheusNamespaces`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from infra.config.reader import Section
from infra.facts.placement import is_label_key, is_label_value

MONITORING_DEFAULTS: dict = {
    "podMonitor": False,
    "podMonitorLabels": {},  # e.g. {release: kube-prometheus-stack}: what its Prometheus selects
    "grafanaDashboard": False,
    "dashboardNamespace": None,  # the Dask namespace
    "prometheusNamespaces": [],
}
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class MonitoringSettings:
    pod_monitor: bool = False
    pod_monitor_labels: Mapping[str, str] = field(default_factory=dict)
    grafana_dashboard: bool = False
    dashboard_namespace: str | None = None  # None: the Dask namespace
    prometheus_namespaces: tuple[str, ...] = ()  # namespaces whose pods may scrape /metrics


def _namespace_name(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_NAMESPACE.match(value))


def parse_monitoring(s: Section) -> MonitoringSettings:
    """`adaptive-dask:dask.monitoring` (unknown fields are refused by the Section)."""
    namespaces = []
    for item in s["prometheusNamespaces"].items():
        if not _namespace_name(item.value):
            raise item.fail("must be a namespace name (a DNS-1123 label: a-z, 0-9, '-', at most 63)")
        namespaces.append(item.value)
    if len(set(namespaces)) != len(namespaces):
        raise s["prometheusNamespaces"].fail("must not contain duplicates")
    pod_monitor = s["podMonitor"].boolean()
    if pod_monitor and not namespaces:
        raise s["podMonitor"].fail(
            f"needs {s['prometheusNamespaces'].key}: the namespaces of the Prometheus that scrapes "
            "(the NetworkPolicy admits no other pod to /metrics)"
        )
    labels = s["podMonitorLabels"].string_map()
    for key, value in labels.items():
        if not is_label_key(key) or not is_label_value(value):
            raise s["podMonitorLabels"].fail(f"{key}: {value!r} is not a Kubernetes label key and value")
    if labels and not pod_monitor:
        raise s["podMonitorLabels"].fail(f"labels the PodMonitor: set {s['podMonitor'].key}: true")
    dashboard_namespace = s["dashboardNamespace"].optional_string()
    if dashboard_namespace is not None and not _namespace_name(dashboard_namespace):
        raise s["dashboardNamespace"].fail(
            "must be a namespace name (a DNS-1123 label: a-z, 0-9, '-', at most 63)"
        )
    grafana = s["grafanaDashboard"].boolean()
    if dashboard_namespace is not None and not grafana:
        raise s["dashboardNamespace"].fail(f"places the dashboard: set {s['grafanaDashboard'].key}: true")
    return MonitoringSettings(
        pod_monitor=pod_monitor,
        pod_monitor_labels=labels,
        grafana_dashboard=grafana,
        dashboard_namespace=dashboard_namespace,
        prometheus_namespaces=tuple(namespaces),
    )
