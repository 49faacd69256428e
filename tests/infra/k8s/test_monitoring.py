"""`dask.monitoring`: config errors naming the key, the objects (PodMonitor only when asked, selecting the
program's own pods; the metrics NetworkPolicy admitting only the named namespaces; the dashboard ConfigMap),
the local target's CRD check, and the whole program's graph under mocks."""

from __future__ import annotations

import json

import pytest

from infra.config.monitoring import MONITORING_DEFAULTS, parse_monitoring
from infra.errors import ConfigError
from infra.k8s import dask_objects as kd
from infra.k8s import monitoring
from infra.k8s import network_policies as np_
from infra.k8s.live import check_local_cluster
from testbed.infra import builders

KEY = "adaptive-dask:dask.monitoring"
ON = {"podMonitor": True, "grafanaDashboard": True, "prometheusNamespaces": ["monitoring", "obs"]}


def selects(selector: dict, labels: dict) -> bool:
    """matchLabels and `In` matchExpressions (all these objects use); an empty selector selects all."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        assert e["operator"] == "In", e
        if labels.get(e["key"]) not in e["values"]:
            return False
    return True


def parse(raw: dict):
    return parse_monitoring(builders.section(KEY, raw, MONITORING_DEFAULTS))


def settings_with(raw: dict, target: str = "aws"):
    if target == "local":
        return builders.dask({"monitoring": raw}, target="local", namespace="adask-local")
    cluster = builders.aws((builders.group("spot", ("m6i.2xlarge",), "SPOT", 10, 100),))
    return builders.dask({"monitoring": raw}, target="aws", cluster=cluster, namespace="adask-dev")


@pytest.mark.parametrize(
    ("raw", "key", "says"),
    [
        ({"podMonitr": True}, f"{KEY}.podMonitr", "unknown field"),
        ({"prometheusNamespaces": [""]}, f"{KEY}.prometheusNamespaces[0]", "namespace name"),
        ({"prometheusNamespaces": ["Monitoring"]}, f"{KEY}.prometheusNamespaces[0]", "DNS-1123"),
        ({"prometheusNamespaces": [7]}, f"{KEY}.prometheusNamespaces[0]", "namespace name"),
        ({"prometheusNamespaces": ["a", "a"]}, f"{KEY}.prometheusNamespaces", "duplicates"),
        ({"prometheusNamespaces": "monitoring"}, f"{KEY}.prometheusNamespaces", "must be a list"),
        ({"podMonitor": True}, f"{KEY}.podMonitor", "prometheusNamespaces"),
        ({"podMonitor": "yes", "prometheusNamespaces": ["m"]}, f"{KEY}.podMonitor", "true or false"),
        ({"podMonitorLabels": {"release": "kps"}}, f"{KEY}.podMonitorLabels", "podMonitor: true"),
        ({**ON, "podMonitorLabels": {"bad key!": "x"}}, f"{KEY}.podMonitorLabels", "label key"),
        ({"dashboardNamespace": "grafana"}, f"{KEY}.dashboardNamespace", "grafanaDashboard: true"),
        ({"grafanaDashboard": True, "dashboardNamespace": "-x"}, f"{KEY}.dashboardNamespace", "namespace"),
    ],
)
def test_bad_input_names_the_key(raw, key, says):
    with pytest.raises(ConfigError) as error:
        parse(raw)
    assert error.value.key == key and says in error.value.allowed


def test_off_by_default_and_nothing_made():
    settings = settings_with({})
    assert settings.monitoring == parse({})
    assert not np_.metrics_policies(settings, kd.Names.of(settings))


def test_pod_monitor_selects_exactly_the_programs_scheduler_and_worker_pods():
    settings = settings_with({**ON, "podMonitorLabels": {"release": "kube-prometheus-stack"}})
    names = kd.Names.of(settings)
    manifest = monitoring.pod_monitor(settings, names)
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1" and manifest["kind"] == "PodMonitor"
    assert manifest["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = manifest["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [names.namespace]}
    templates = builders.templates(settings)
    for component, template in templates.items():
        assert selects(spec["selector"], template["metadata"]["labels"]), component
        [container] = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports[monitoring.METRICS_PORT_NAME] in monitoring.METRICS_PORTS, component
        assert "--dashboard-address" in container["command"], component
    [endpoint] = spec["podMetricsEndpoints"]
    assert endpoint["port"] == monitoring.METRICS_PORT_NAME and endpoint["path"] == "/metrics"
    # not the headroom placeholders, nor another stack's pods
    assert not selects(spec["selector"], kd.selector_labels(kd.Names("other-stack"), "worker"))


def test_metrics_policy_admits_only_the_named_namespaces_on_the_metrics_ports():
    settings = settings_with(ON)
    names = kd.Names.of(settings)
    [policy] = [
        p for p in np_.network_policies(settings, names) if p["metadata"]["name"].endswith("prometheus")
    ]
    [rule] = policy["spec"]["ingress"]
    [peer] = rule["from"]
    assert {p["port"] for p in rule["ports"]} == {kd.DASHBOARD_PORT, kd.WORKER_DASHBOARD_PORT}
    assert kd.SCHEDULER_PORT not in {p["port"] for p in rule["ports"]}
    for namespace, admitted in (
        ("monitoring", True),
        ("obs", True),
        ("default", False),
        (names.namespace, False),
    ):
        labels = {np_.NAMESPACE_NAME_LABEL: namespace}
        assert selects(peer["namespaceSelector"], labels) is admitted, namespace
    assert "podSelector" not in peer  # every pod of those namespaces, none elsewhere
    for template in builders.templates(settings).values():
        assert selects(policy["spec"]["podSelector"], template["metadata"]["labels"])


def test_dashboard_configmap_is_the_committed_json_with_the_sidecar_label():
    settings = settings_with({**ON, "dashboardNamespace": "grafana"})
    manifest = monitoring.dashboard_configmap(settings, kd.Names.of(settings))
    assert manifest["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert manifest["metadata"]["namespace"] == "grafana"
    [(filename, text)] = manifest["data"].items()
    assert filename.endswith(".json") and json.loads(text)["uid"] == "adaptive-dask"
    default = monitoring.dashboard_configmap(settings_with(ON), kd.Names.of(settings))
    assert default["metadata"]["namespace"] == settings.namespace


def test_the_worker_seconds_group_is_the_worker_groups_on_aws_and_the_default_locally():
    aws = settings_with({})
    command = kd.scheduler_command(aws, kd.Names.of(aws))
    assert command[command.index("--worker-group") + 1] == "spot"
    local = settings_with({}, target="local")
    assert "--worker-group" not in kd.scheduler_command(local, kd.Names.of(local))


class FakeSettings:
    def __init__(self, dask, target="local", kube_context="kind-dev"):
        self.dask, self.target, self.kube_context = dask, target, kube_context


def test_local_target_refuses_a_pod_monitor_without_the_crd():
    asked = []

    def missing(context, name):
        asked.append((context, name))
        return False

    settings = FakeSettings(settings_with(ON, target="local"))
    with pytest.raises(ConfigError) as error:
        check_local_cluster(settings, read=missing)
    assert error.value.key == f"{KEY}.podMonitor" and "podmonitors.monitoring.coreos.com" in str(error.value)
    assert asked == [("kind-dev", "podmonitors.monitoring.coreos.com")]
    check_local_cluster(settings, read=lambda c, n: True)  # installed: passes


def test_crd_check_only_when_asked_and_only_on_local():
    def boom(context, name):
        raise AssertionError("not asked")

    check_local_cluster(FakeSettings(settings_with({}, target="local")), read=boom)
    check_local_cluster(FakeSettings(settings_with(ON), target="aws", kube_context=None), read=boom)


def test_unreachable_cluster_is_an_error_and_missing_rights_only_a_warning():
    settings = FakeSettings(settings_with(ON, target="local"))

    def unreachable(context, name):
        raise ConnectionError("connection refused")

    def forbidden(context, name):
        raise PermissionError("403 Forbidden")

    with pytest.raises(ConfigError, match="connection refused"):
        check_local_cluster(settings, read=unreachable)
    check_local_cluster(settings, read=forbidden)  # a namespace admin may not read CRDs: warned, not refused


def monitoring_overrides(stack: str, raw: dict) -> dict[str, str]:
    from testbed.infra.harness import stack_value

    dask_value = dict(stack_value(stack, builders.DASK_KEY, {}) or {})
    return {builders.DASK_KEY: json.dumps({**dask_value, "monitoring": raw})}


POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_the_program_makes_the_pod_monitor_and_dashboard_only_when_asked(stack, stack_graph, monkeypatch):
    import infra.k8s.live

    monkeypatch.setattr(infra.k8s.live, "crd_exists", lambda context, name: True)  # the local target's check
    plain = stack_graph(stack)
    assert not plain.of_type(POD_MONITOR)
    assert not [n for n in plain.of_type(CONFIGMAP) if "grafana_dashboard" in n.inputs["metadata"]["labels"]]
    graph = stack_graph(stack, overrides=monitoring_overrides(stack, ON))
    pod_monitor = graph.one(POD_MONITOR)
    assert pod_monitor.inputs["spec"]["selector"]["matchLabels"]
    [dashboard] = [
        n for n in graph.of_type(CONFIGMAP) if "grafana_dashboard" in n.inputs["metadata"]["labels"]
    ]
    assert dashboard.inputs["data"] == {"dask-adaptive.json": monitoring.DASHBOARD_FILE.read_text()}
    policies = {
        n.inputs["metadata"]["name"] for n in graph.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    }
    assert "dask-metrics-from-prometheus" in policies


@pytest.mark.parametrize("minor", ["1.30", "1.35"])
def test_the_configmap_and_the_policy_validate_against_the_kubernetes_schema(minor):
    from tests.infra.schema import schema_errors

    settings = settings_with({**ON, "dashboardNamespace": "grafana"})
    names = kd.Names.of(settings)
    objects = [monitoring.dashboard_configmap(settings, names), *np_.metrics_policies(settings, names)]
    assert len(objects) == 2
    assert [e for o in objects for e in schema_errors(o, minor)] == []


# Field names of monitoring.coreos.com/v1 PodMonitor (the Prometheus Operator's API reference), the subset
# this program may use: a typo would be dropped by the CRD's schema pruning and scrape nothing.
POD_MONITOR_SPEC_FIELDS = {
    "selector",
    "namespaceSelector",
    "podMetricsEndpoints",
    "podTargetLabels",
    "jobLabel",
}
ENDPOINT_FIELDS = {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels", "relabelings"}


def test_pod_monitor_uses_only_the_crds_field_names():
    settings = settings_with(ON)
    spec = monitoring.pod_monitor(settings, kd.Names.of(settings))["spec"]
    assert set(spec) <= POD_MONITOR_SPEC_FIELDS
    assert set(spec["namespaceSelector"]) == {"matchNames"}
    for endpoint in spec["podMetricsEndpoints"]:
        assert set(endpoint) <= ENDPOINT_FIELDS and endpoint["scheme"] in ("http", "https")
