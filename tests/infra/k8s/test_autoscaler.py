"""ClusterAutoscaler under Pulumi mocks: IRSA role, policy, and the Helm release it installs."""

from __future__ import annotations

import json
import re

import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.facts.versions import CA_IMAGE_TAGS
from infra.k8s import ca as k8s_ca
from infra.k8s.autoscaler import ClusterAutoscaler
from testbed.infra import builders
from testbed.infra.harness import Graph, install, resolve, run_graph
from tests.infra.iam_lint import findings

CLUSTER = "adask-dev"
ARN = f"arn:aws:eks:us-east-1:123456789012:cluster/{CLUSTER}"
ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/0123456789ABCDEF"
OIDC_ARN = f"arn:aws:iam::123456789012:oidc-provider/{ISSUER}"
RELEASE = "kubernetes:helm.sh/v3:Release"


def run(
    version: str = "1.34",
    groups=(("adask-dev-spot-ng", "SPOT"), ("adask-dev-od-ng", "ON_DEMAND")),
    raw: dict | None = None,
) -> tuple[Graph, ClusterAutoscaler]:
    cluster = builders.aws(tuple(builders.group(n, ("m5.large",), c, 3) for n, c in groups), version=version)
    settings = builders.autoscaler(json.dumps(raw or {}), cluster)
    mocks, monitor = install(stack="dev")
    box = {}

    def program() -> None:
        box["ca"] = ClusterAutoscaler(
            "ca",
            settings,
            cluster_name=CLUSTER,
            cluster_arn=ARN,
            region="us-east-1",
            oidc_provider_arn=OIDC_ARN,
            oidc_issuer_url=ISSUER,
            worker_node_groups=list(groups),
            k8s_provider=k8s.Provider("k8s", kubeconfig="{}"),
            aws_provider=aws.Provider("aws", region="us-east-1"),
        )

    return run_graph(program, mocks, monitor), box["ca"]


def test_irsa_role_trusts_exactly_the_chart_service_account():
    graph, ca = run()
    role = graph.one("aws:iam/role:Role")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    release = graph.one(RELEASE)
    sa = release.inputs["values"]["rbac"]["serviceAccount"]
    conditions = trust["Statement"][0]["Condition"]["StringEquals"]
    assert conditions[f"{ISSUER}:sub"] == f"system:serviceaccount:{release.inputs['namespace']}:{sa['name']}"
    assert conditions[f"{ISSUER}:aud"] == "sts.amazonaws.com"
    assert trust["Statement"][0]["Principal"] == {"Federated": OIDC_ARN}
    assert sa["annotations"]["eks.amazonaws.com/role-arn"] == resolve(ca.role_arn) == role.state["arn"]


def test_policy_is_attached_to_that_role_and_lints_clean():
    graph, _ = run()
    role, policy = graph.one("aws:iam/role:Role"), graph.one("aws:iam/rolePolicy:RolePolicy")
    assert policy.property_dependencies["role"] == [role.urn]  # role=role.id
    doc = json.loads(policy.inputs["policy"])
    assert findings(doc) == []
    assert f"aws:ResourceTag/k8s.io/cluster-autoscaler/{CLUSTER}" in json.dumps(doc)


def test_release_is_the_pinned_chart_with_tuned_flags():
    graph, _ = run()
    release = graph.one(RELEASE)
    inputs = release.inputs
    assert inputs["chart"] == "cluster-autoscaler"
    assert inputs["version"] == k8s_ca.CHART_VERSION and re.fullmatch(r"\d+\.\d+\.\d+", inputs["version"])
    assert inputs["repositoryOpts"] == {"repo": "https://kubernetes.github.io/autoscaler"}
    assert inputs["namespace"] == "kube-system"
    values = inputs["values"]
    assert values["image"]["tag"].startswith("v1.34.")
    assert values["autoDiscovery"] == {"clusterName": CLUSTER}
    assert values["awsRegion"] == "us-east-1"
    assert values["nodeSelector"] == {"adaptive-dask/pool": "system"}
    assert values["tolerations"] == []  # the system nodes carry no taint
    args = values["extraArgs"]
    assert args["skip-nodes-with-local-storage"] == "false"
    assert args["skip-nodes-with-system-pods"] == "false"
    assert args["balance-similar-node-groups"] == "true"
    assert args["expander"] == "priority,least-waste"
    assert {"scale-down-unneeded-time", "scale-down-delay-after-add", "max-node-provision-time"} <= set(args)


def test_priority_configmap_prefers_the_spot_group():
    graph, _ = run()
    prio = graph.one(RELEASE).inputs["values"]["expanderPriorities"]
    best = prio[max(prio, key=int)]
    assert any(re.match(p, "eks-adask-dev-spot-ng-4ec7a1b2-9f0e") for p in best)
    assert not any(re.match(p, "eks-adask-dev-od-ng-4ec7a1b2-9f0e") for p in best)


def test_no_priorities_without_a_spot_and_on_demand_mix():
    graph, _ = run(groups=(("only-spot", "SPOT"),))
    values = graph.one(RELEASE).inputs["values"]
    assert values["extraArgs"]["expander"] == "least-waste" and "expanderPriorities" not in values


def test_image_tag_tracks_the_cluster_minor():
    graph, _ = run(version="1.33")
    assert graph.one(RELEASE).inputs["values"]["image"]["tag"] == CA_IMAGE_TAGS["1.33"]


def test_explicit_providers_parents_and_order():
    graph, _ = run()
    [component] = graph.of_type("adaptive-dask:kubernetes:ClusterAutoscaler")
    [k8s_provider] = graph.of_type("pulumi:providers:kubernetes")
    [aws_provider] = graph.of_type("pulumi:providers:aws")
    release = graph.one(RELEASE)
    assert release.provider_urn == k8s_provider.urn
    for node in (graph.one("aws:iam/role:Role"), graph.one("aws:iam/rolePolicy:RolePolicy")):
        assert node.provider_urn == aws_provider.urn
    for node in graph.nodes:
        if node.custom and not node.type.startswith("pulumi:providers:"):
            assert node.parent == component.urn
    # CA must find its permissions in place when it starts
    assert graph.depends_on(release, graph.one("aws:iam/rolePolicy:RolePolicy"))
