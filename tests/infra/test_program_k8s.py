"""The Kubernetes layer inside the real program (infra/__main__.py under mocks), for every stack file."""

from __future__ import annotations

import json

import pulumi
import pytest

from infra.errors import ConfigError
from infra.facts.versions import CA_IMAGE_TAGS
from testbed.infra.harness import (
    Graph,
    install,
    load_stack_config,
    run_graph,
    run_main,
    run_stack,
    stack_names,
    stack_value,
)
from tests.infra.iam_lint import findings
from tests.infra.preload_files import PACKAGE, on_disk
from tests.infra.schema import schema_errors

STACKS = stack_names()
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
RELEASE = "kubernetes:helm.sh/v3:Release"
_CACHE: dict[tuple, Graph] = {}
_PACKAGE_AT_RUN: dict[tuple, dict[str, str]] = {}  # the package files as they were when the program ran


def target(stack: str) -> str:
    return str(stack_value(stack, "adaptive-dask:target", "aws"))


AWS_STACKS = [s for s in STACKS if target(s) == "aws"]
LOCAL_STACKS = [s for s in STACKS if target(s) == "local"]


def graph_of(stack: str, preview: bool = False, overrides: dict[str, str] | None = None) -> Graph:
    key = (stack, preview, tuple(sorted((overrides or {}).items())))
    for _ in range(3):  # the package is someone's working tree: run again if it changed meanwhile
        if key in _CACHE:
            break
        before = on_disk(PACKAGE)
        try:
            graph = run_stack(stack, preview=preview, overrides=overrides)
        finally:
            pulumi.runtime.set_all_config({})
            pulumi.runtime.reset_options()
        if on_disk(PACKAGE) == before:
            _PACKAGE_AT_RUN[key], _CACHE[key] = before, graph
    return _CACHE[key]


def kube_objects(g: Graph) -> list:
    return [n for n in g.nodes if n.type.startswith("kubernetes:") and n.type != RELEASE]


def kubernetes_minor(stack: str) -> str:
    if target(stack) == "local":
        return min(CA_IMAGE_TAGS)  # any cluster: validate against the oldest supported minor
    return str({"version": "1.35", **stack_value(stack, "adaptive-dask:cluster", {})}["version"])  # type: ignore[dict-item]


def autoscaler_policy(g: Graph):
    [node] = [n for n in g.of_type("aws:iam/rolePolicy:RolePolicy") if "autoscaler" in n.name]
    return node


def worker(g: Graph):
    [node] = [n for n in g.of_type(DEPLOYMENT) if n.inputs["metadata"]["name"] == "dask-worker"]
    return node


def test_there_is_a_local_stack():
    assert LOCAL_STACKS == ["local"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_kubernetes_resource_uses_the_one_explicit_provider(stack):
    g = graph_of(stack)
    [provider] = g.of_type("pulumi:providers:kubernetes")
    kube = [n for n in g.nodes if n.type.startswith("kubernetes:")]
    assert len(kube) >= 9  # ns, 2 SAs, Role, RoleBinding, ConfigMap, 2 Deployments, Service (+ CA)
    assert {n.provider_urn for n in kube} == {provider.urn}


@pytest.mark.parametrize("stack", STACKS)
def test_every_kubernetes_object_is_valid_for_the_configured_version(stack):
    g = graph_of(stack)
    minor = kubernetes_minor(stack)
    assert [e for n in kube_objects(g) for e in schema_errors(n.inputs, minor)] == []


@pytest.mark.parametrize("stack", STACKS)
def test_worker_replicas_are_created_at_zero_and_never_managed(stack):
    node = worker(graph_of(stack))
    assert node.inputs["spec"]["replicas"] == 0 and node.ignore_changes == ["spec.replicas"]


@pytest.mark.parametrize("stack", STACKS)
def test_rbac_is_namespaced_and_exact(stack):
    g = graph_of(stack)
    assert not [n for n in g.nodes if "ClusterRole" in n.type]
    roles = g.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    [role] = [n for n in roles if n.name.endswith("-dask-role")]
    assert role.inputs["rules"][0]["resourceNames"] == [worker(g).inputs["metadata"]["name"]]
    assert "*" not in json.dumps(role.inputs["rules"])


@pytest.mark.parametrize("stack", STACKS)
def test_configmap_is_the_package(stack):
    g = graph_of(stack)
    cm = g.one("kubernetes:core/v1:ConfigMap")
    [vol] = [v for v in worker(g).inputs["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    shipped = {i["path"]: cm.inputs["data"][i["key"]] for i in vol["configMap"]["items"]}
    assert shipped == _PACKAGE_AT_RUN[(stack, False, ())]


@pytest.mark.parametrize("stack", STACKS)
def test_exports(stack):
    g = graph_of(stack)
    ns = g.one("kubernetes:core/v1:Namespace").inputs["metadata"]["name"]
    assert g.exports["daskNamespace"] == ns
    assert g.exports["daskSchedulerAddress"] == f"tls://dask-scheduler.{ns}.svc.cluster.local:8786"
    setup = g.exports["daskClientSetup"]
    assert setup.startswith(f'eval "$(python -m dask_adaptive client-config --namespace {ns})"')
    assert f"kubectl -n {ns} port-forward svc/dask-scheduler 8786:8786 &" in setup
    assert "Client('tls://localhost:8786')" in setup
    assert "port-forward svc/dask-scheduler 8787:8787" in g.exports["daskDashboard"]
    selector = dict(kv.split("=") for kv in g.exports["daskWorkerSelector"].split(","))
    assert worker(g).inputs["spec"]["selector"]["matchLabels"] == selector
    assert g.exports["daskWorkerDeployment"] == "dask-worker"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_aws_workers_are_sized_for_and_pinned_to_the_stack_worker_groups(stack):
    from infra.facts.instance_types import pod_capacity

    g = graph_of(stack)
    groups = stack_value(stack, "adaptive-dask:workerGroups")
    spec = worker(g).inputs["spec"]["template"]["spec"]
    placement = json.dumps({k: spec.get(k) for k in ("nodeSelector", "affinity")})
    for group in groups:  # type: ignore[union-attr]
        assert f'"{group["name"]}"' in placement
        for taint in group.get("taints", []):
            assert {
                "key": taint["key"],
                "operator": "Equal",
                "value": taint["value"],
                "effect": taint["effect"],
            } in spec["tolerations"]
    assert {
        "key": "adaptive-dask/dask-worker",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    } in spec["tolerations"]
    limits = spec["containers"][0]["resources"]["limits"]
    smallest = min(pod_capacity(t).memory_mib for grp in groups for t in grp["instanceTypes"])  # type: ignore[union-attr]
    assert int(limits["memory"].removesuffix("Mi")) <= smallest


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_aws_pods_wait_for_nodes_and_the_autoscaler_for_its_permissions(stack):
    g = graph_of(stack)
    ns = g.one("kubernetes:core/v1:Namespace")
    release = g.one(RELEASE)
    for node_group in g.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert g.depends_on(ns, node_group) and g.depends_on(release, node_group)
    assert g.depends_on(release, autoscaler_policy(g))


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_autoscaler_release_matches_the_cluster(stack):
    g = graph_of(stack)
    values = g.one(RELEASE).inputs["values"]
    cluster = g.one("aws:eks/cluster:Cluster")
    assert values["autoDiscovery"]["clusterName"] == cluster.state["name"]
    assert values["image"]["tag"] == CA_IMAGE_TAGS[kubernetes_minor(stack)]
    assert values["awsRegion"] == stack_value(stack, "aws:region")
    role = g.one(
        "aws:iam/role:Role",
        name=next(n.name for n in g.of_type("aws:iam/role:Role") if "autoscaler" in n.name),
    )
    assert values["rbac"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"] == role.state["arn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])
    oidc = g.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert trust["Statement"][0]["Principal"]["Federated"] == oidc.state["arn"]
    assert g.exports["clusterAutoscalerRoleArn"] == role.state["arn"]
    groups = stack_value(stack, "adaptive-dask:workerGroups")
    kinds = {grp.get("capacityType", "ON_DEMAND") for grp in groups}  # type: ignore[union-attr]
    assert ("expanderPriorities" in values) == (kinds == {"SPOT", "ON_DEMAND"})
    if "expanderPriorities" in values:
        best = values["expanderPriorities"][max(values["expanderPriorities"], key=int)]
        spot_asgs = [
            n.state["resources"][0]["autoscalingGroups"][0]["name"]
            for n in g.of_type("aws:eks/nodeGroup:NodeGroup")
            if n.inputs["capacityType"] == "SPOT"
        ]
        import re

        assert spot_asgs and all(any(re.match(p, asg) for p in best) for asg in spot_asgs)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_iam_document_of_the_layer_lints(stack):
    g = graph_of(stack)
    policy = autoscaler_policy(g)
    assert findings(json.loads(policy.inputs["policy"])) == []
    role = next(n for n in g.of_type("aws:iam/role:Role") if "autoscaler" in n.name)
    # the two findings are parliament's identity-policy view of a trust policy (justified in
    # k8s/test_ca.py test_trust_policy_lint_has_only_the_two_justified_findings)
    assert [i for i, _ in findings(json.loads(role.inputs["assumeRolePolicy"]))] == [
        "MALFORMED",
        "UNKNOWN_FEDERATION_SOURCE",
    ]


@pytest.mark.parametrize("stack", LOCAL_STACKS)
def test_local_stack_has_no_aws_and_no_autoscaler(stack):
    g = graph_of(stack)
    assert [n for n in g.nodes if n.type.startswith("aws:") or n.type == "pulumi:providers:aws"] == []
    assert g.of_type(RELEASE) == [] and g.calls == []
    [provider] = g.of_type("pulumi:providers:kubernetes")
    assert "kubeconfig" not in provider.inputs  # the user's own kubeconfig, not one we generate


def test_local_stack_can_name_a_kubeconfig_context():
    g = graph_of("local", overrides={"adaptive-dask:kubeContext": "kind-dask"})
    [provider] = g.of_type("pulumi:providers:kubernetes")
    assert provider.inputs["context"] == "kind-dask"


@pytest.mark.parametrize("stack", STACKS)
def test_preview_registers_the_same_kubernetes_layer(stack):
    up, preview = graph_of(stack), graph_of(stack, preview=True)

    def names(g):
        return {
            (n.type, n.name)
            for n in g.nodes
            if n.type.startswith(("kubernetes:", "adaptive-dask:kubernetes"))
        }

    assert names(preview) == names(up)


@pytest.mark.parametrize(
    ("stack", "key", "value"),
    [
        ("dev", "adaptive-dask:dask", '{"dashboardAllowedCidrs": ["0.0.0.0/0"]}'),
        ("prod", "adaptive-dask:autoscaler", '{"expander": "cheapest"}'),
        ("local", "adaptive-dask:dask", '{"workerMemory": "512Mi"}'),
    ],
)
def test_bad_layer_config_fails_before_any_resource_is_registered(stack, key, value):
    _, config, secrets = load_stack_config(stack)
    config[key] = value
    mocks, monitor = install(stack=stack, config=config, secret_keys=secrets)
    with pytest.raises(ConfigError) as caught:
        run_graph(run_main, mocks, monitor)
    assert caught.value.key.startswith(key)
    assert monitor.records == [] and mocks.calls == []
