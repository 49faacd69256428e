"""Every billable resource of every committed stack carries the stack's cost-allocation tags (issue 23 §3).

Over the whole graph of the real program under mocks: each resource type is classified in
billable_types.py (an unclassified type fails), and each billable one is tagged either directly, through
the explicit provider's default tags (its type takes `tags`, so `tags_all` gets them), or - what the node
groups' Auto Scaling groups launch - through the launch template's tag specifications for instances,
volumes and network interfaces. Kubernetes objects that make AWS create something (a LoadBalancer
Service, an EBS CSI StorageClass, the claims on it) carry the tags the way their controllers read them.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from functools import cache

import pytest

from infra.aws.tags import (
    LOAD_BALANCER_TAGS_ANNOTATION,
    STORAGE_CLASS_TAG_PREFIX,
    annotation_unsafe_tag,
    load_balancer_tags,
    storage_class_tag_parameters,
)
from infra.config.aws import BUILTIN_TAG_KEYS
from infra.config.load import load_settings
from infra.config.reader import PROJECT
from infra.errors import ConfigError
from testbed.infra import builders
from testbed.infra.harness import Graph, Node, install, run_program, stack_names, stack_value
from tests.infra.aws import billable_types as bt

GraphOf = Callable[..., Graph]
AWS_PROVIDER = "pulumi:providers:aws"
EBS_CSI = "ebs.csi.aws.com"
LAUNCHED_KINDS = ("instance", "volume", "network-interface")

AWS_STACKS = [s for s in stack_names() if stack_value(s, "adaptive-dask:target", "aws") == "aws"]
# The optional features on, over dev: the ECR repository, the dashboard's load balancer, the notebook's EBS
# volume, the monitoring objects.
FEATURES = {
    f"{PROJECT}:images": json.dumps({"repository": True}),
    f"{PROJECT}:dask": json.dumps(
        {
            "dashboardAllowedCidrs": ["10.0.0.0/8"],
            "image": builders.team_image("dev"),  # the notebook needs the team's image
            "jupyter": {"enabled": True},
            "monitoring": {
                "podMonitor": True,
                "grafanaDashboard": True,
                "prometheusNamespaces": ["monitoring"],
            },
        }
    ),
}
VARIANTS = [pytest.param(s, {}, id=s) for s in AWS_STACKS] + [
    pytest.param("dev", FEATURES, id="dev-features")
]


# ---------------------------------------------------------------------------------------------- the rules


@cache
def takes_default_tags(token: str) -> bool:
    """The provider's default tags reach a resource whose type has `tags` and the computed `tags_all`."""
    path, cls_name = token.split(":", 1)[1].rsplit(":", 1)
    cls = getattr(importlib.import_module(f"pulumi_aws.{path.split('/')[0]}"), cls_name)
    takes = "tags" in inspect.signature(cls._internal_init).parameters
    return takes and isinstance(inspect.getattr_static(cls, "tags_all", None), property)


def cost_tags(graph: Graph) -> dict[str, str]:
    """The tags on the stack's one AWS provider's default tags."""
    return json.loads(graph.one(AWS_PROVIDER).inputs["defaultTags"])["tags"]


def covers(tags: Mapping[str, str] | None, wanted: Mapping[str, str]) -> bool:
    return wanted.items() <= dict(tags or {}).items()


def unclassified(graph: Graph) -> list[str]:
    known = {*bt.BILLABLE, *bt.NOT_BILLABLE, *bt.K8S_NOT_BILLABLE}
    known |= {bt.K8S_SERVICE, bt.K8S_STORAGE_CLASS, bt.K8S_CLAIM, bt.K8S_STATEFUL_SET, bt.K8S_HELM_RELEASE}
    return sorted(
        {
            n.type
            for n in graph.nodes
            if n.custom and not n.type.startswith(bt.NOT_AWS) and n.type not in known
        }
    )


def _launch_template_gaps(graph: Graph, group: Node, wanted: Mapping[str, str]) -> list[str]:
    ref = group.inputs.get("launchTemplate") or {}
    templates = [t for t in graph.of_type("aws:ec2/launchTemplate:LaunchTemplate") if t.id == ref.get("id")]
    if len(templates) != 1:
        return [f"{group.name}: no launch template of the stack (the EKS default one carries no tags)"]
    specs = {s["resourceType"]: s.get("tags") for s in templates[0].inputs.get("tagSpecifications") or []}
    return [
        f"{group.name}: launched {k} not tagged" for k in LAUNCHED_KINDS if not covers(specs.get(k), wanted)
    ]


def untagged_aws(graph: Graph, wanted: Mapping[str, str]) -> list[str]:
    """Billable AWS resources the cost tags do not reach, one line each."""
    provider = graph.one(AWS_PROVIDER)
    gaps: list[str] = []
    for node in graph.nodes:
        if node.type not in bt.BILLABLE:
            continue
        how, _ = bt.BILLABLE[node.type]
        own = node.inputs.get("tags") or {}
        clash = {k: v for k, v in own.items() if k in wanted and v != wanted[k]}
        if clash:
            gaps.append(f"{node.name}: its own tags override cost tags {clash}")
        if how == bt.LAUNCH_TEMPLATE:
            gaps += _launch_template_gaps(graph, node, wanted)
        elif not covers(own, wanted):
            via_provider = node.provider_urn == provider.urn and takes_default_tags(node.type)
            if not via_provider:
                gaps.append(f"{node.name} ({node.type}): neither its tags nor the provider's default tags")
    return gaps


def _storage_classes(graph: Graph) -> dict[str, Node]:
    return {n.inputs["metadata"]["name"]: n for n in graph.of_type(bt.K8S_STORAGE_CLASS)}


def _addon_volume_tags(graph: Graph) -> dict[str, str]:
    for addon in graph.of_type("aws:eks/addon:Addon"):
        if addon.inputs.get("addonName") == "aws-ebs-csi-driver" and addon.inputs.get("configurationValues"):
            values = json.loads(addon.inputs["configurationValues"])
            return dict((values.get("controller") or {}).get("extraVolumeTags") or {})
    return {}


def untagged_kubernetes(graph: Graph, wanted: Mapping[str, str]) -> list[str]:
    """Kubernetes objects that make AWS create something untagged."""
    gaps: list[str] = []
    for svc in graph.of_type(bt.K8S_SERVICE):
        if svc.inputs["spec"].get("type") == "LoadBalancer":
            value = (svc.inputs["metadata"].get("annotations") or {}).get(LOAD_BALANCER_TAGS_ANNOTATION, "")
            lb_tags = dict(pair.split("=", 1) for pair in value.split(",") if "=" in pair)
            if not covers(lb_tags, wanted):
                gaps.append(f"Service {svc.name}: its load balancer would be untagged")
    addon_tags = _addon_volume_tags(graph)
    classes = _storage_classes(graph)
    tagged_classes = set()
    for name, sc in classes.items():
        if sc.inputs.get("provisioner") != EBS_CSI:
            gaps.append(f"StorageClass {name}: provisioner {sc.inputs.get('provisioner')} is not classified")
            continue
        params = sc.inputs.get("parameters") or {}
        specs = dict(v.split("=", 1) for k, v in params.items() if k.startswith(STORAGE_CLASS_TAG_PREFIX))
        if covers(specs, wanted) or covers(addon_tags, wanted):
            tagged_classes.add(name)
        else:
            gaps.append(f"StorageClass {name}: its volumes would be untagged")
    claims = [(c.name, c.inputs["spec"]) for c in graph.of_type(bt.K8S_CLAIM)]
    for sts in graph.of_type(bt.K8S_STATEFUL_SET):
        claims += [(sts.name, t["spec"]) for t in sts.inputs["spec"].get("volumeClaimTemplates") or []]
    for name, spec in claims:
        if spec.get("storageClassName") not in tagged_classes:
            gaps.append(f"{name}: claims a volume from {spec.get('storageClassName')!r}, not a tagged class")
    for release in graph.of_type(bt.K8S_HELM_RELEASE):
        if release.inputs.get("chart") not in bt.HELM_CHARTS_WITHOUT_AWS_RESOURCES:
            gaps.append(f"Helm release {release.name}: chart {release.inputs.get('chart')} is not classified")
    return gaps


# ---------------------------------------------------------------------------------------------- the stacks


@pytest.mark.parametrize(("stack", "overrides"), VARIANTS)
def test_every_resource_type_is_classified(stack: str, overrides: dict, stack_graph: GraphOf) -> None:
    g = stack_graph(stack, overrides=overrides or None)
    assert unclassified(g) == [], "classify these in tests/infra/aws/billable_types.py"


@pytest.mark.parametrize(("stack", "overrides"), VARIANTS)
def test_cost_tags_are_the_stacks_tags(stack: str, overrides: dict, stack_graph: GraphOf) -> None:
    tags = cost_tags(stack_graph(stack, overrides=overrides or None))
    assert tags == {
        "Project": PROJECT,
        "Stack": stack,
        "ManagedBy": "pulumi",
        **stack_value(stack, f"{PROJECT}:tags", {}),
    }
    assert set(BUILTIN_TAG_KEYS) <= set(tags)


@pytest.mark.parametrize(("stack", "overrides"), VARIANTS)
def test_every_billable_resource_carries_the_cost_tags(
    stack: str, overrides: dict, stack_graph: GraphOf
) -> None:
    g = stack_graph(stack, overrides=overrides or None)
    wanted = cost_tags(g)
    assert untagged_aws(g, wanted) == []
    assert untagged_kubernetes(g, wanted) == []
    # The run really had the billable parts to check: nodes, the NAT, the control plane and its logs.
    types = {n.type for n in g.nodes}
    for t in ("aws:eks/nodeGroup:NodeGroup", "aws:ec2/natGateway:NatGateway", "aws:eks/cluster:Cluster"):
        assert t in types


def test_the_features_variant_has_what_it_is_there_to_check(stack_graph: GraphOf) -> None:
    g = stack_graph("dev", overrides=FEATURES)
    assert g.of_type("aws:ecr/repository:Repository")
    assert any(s.inputs["spec"].get("type") == "LoadBalancer" for s in g.of_type(bt.K8S_SERVICE))
    assert g.of_type(bt.K8S_STORAGE_CLASS) and g.of_type(bt.K8S_CLAIM)  # the notebook's home volume
    assert g.of_type("kubernetes:monitoring.coreos.com/v1:PodMonitor")


def test_the_local_stack_makes_nothing_aws_bills(stack_graph: GraphOf) -> None:
    for stack in stack_names():
        if stack_value(stack, "adaptive-dask:target", "aws") != "local":
            continue
        g = stack_graph(stack)
        assert not [n for n in g.nodes if n.type.startswith("aws:")]
        assert untagged_kubernetes(g, {"Stack": stack}) == []


# ------------------------------------------------------------------------------------ the rules can fail


def editable(graph: Graph) -> Graph:
    """A copy of a (session-cached) graph whose nodes a test may change."""
    nodes = [dataclasses.replace(n, inputs=copy.deepcopy(n.inputs)) for n in graph.nodes]
    return Graph(nodes, {}, set(), set(), [], graph.mocks)


def test_the_check_finds_what_the_tags_miss(stack_graph: GraphOf) -> None:
    """Break the real dev graph in the ways that matter; each break is reported."""
    g = editable(stack_graph("dev", overrides=FEATURES))
    wanted = cost_tags(g)
    template = g.of_type("aws:ec2/launchTemplate:LaunchTemplate")[0]
    template.inputs["tagSpecifications"] = [
        s for s in template.inputs["tagSpecifications"] if s["resourceType"] != "volume"
    ]
    nat = g.of_type("aws:ec2/natGateway:NatGateway")[0]
    nat.provider = "urn:pulumi:dev::adaptive-dask::pulumi:providers:aws::other::id"
    log_group = g.of_type("aws:cloudwatch/logGroup:LogGroup")[0]
    log_group.inputs["tags"] = {**(log_group.inputs.get("tags") or {}), "Stack": "someone-else"}
    lb = next(s for s in g.of_type(bt.K8S_SERVICE) if s.inputs["spec"].get("type") == "LoadBalancer")
    lb.inputs["metadata"]["annotations"].pop(LOAD_BALANCER_TAGS_ANNOTATION)
    stranger = dataclasses.replace(nat, type="aws:rds/instance:Instance")
    g.nodes.append(stranger)

    gaps = untagged_aws(g, wanted)
    assert any("launched volume not tagged" in line for line in gaps)
    assert any(nat.name in line and "default tags" in line for line in gaps)
    assert any(log_group.name in line and "override" in line for line in gaps)
    assert any(f"Service {lb.name}" in line for line in untagged_kubernetes(g, wanted))
    assert unclassified(g) == ["aws:rds/instance:Instance"]


def test_a_claim_on_an_untagged_or_default_class_is_found(stack_graph: GraphOf) -> None:
    g = editable(stack_graph("dev", overrides=FEATURES))
    wanted = cost_tags(g)
    spec = {"metadata": {"name": "home"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
    g.nodes.append(
        dataclasses.replace(g.of_type(bt.K8S_SERVICE)[0], type=bt.K8S_CLAIM, name="home", inputs=spec)
    )
    assert any("home: claims a volume from None" in line for line in untagged_kubernetes(g, wanted))


def test_default_tags_reach_only_types_that_take_tags() -> None:
    assert takes_default_tags("aws:ec2/natGateway:NatGateway")
    assert takes_default_tags("aws:budgets/budget:Budget")
    assert not takes_default_tags("aws:autoscaling/tag:Tag")
    assert not takes_default_tags("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    for token, (how, _) in bt.BILLABLE.items():
        if how == bt.DEFAULT_TAGS:
            assert takes_default_tags(token), token


# ------------------------------------------------------------------------------------ the tag formats


def test_storage_class_and_load_balancer_tag_formats() -> None:
    tags = {"Project": PROJECT, "Stack": "dev", "Team": "data platform"}
    assert storage_class_tag_parameters(tags) == {
        "tagSpecification_1": f"Project={PROJECT}",
        "tagSpecification_2": "Stack=dev",
        "tagSpecification_3": "Team=data platform",
    }
    assert load_balancer_tags(tags) == f"Project={PROJECT},Stack=dev,Team=data platform"
    assert annotation_unsafe_tag(tags) is None
    assert annotation_unsafe_tag({**tags, "Cost": "a=b"}) == "Cost"
    assert annotation_unsafe_tag({**tags, "A,B": "x"}) == "A,B"


def test_a_tag_the_load_balancer_annotation_cannot_carry_is_refused_only_with_the_load_balancer() -> None:
    tags = {f"{PROJECT}:tags": json.dumps({"Owner": "data,platform"})}
    lb = {f"{PROJECT}:dask": json.dumps({"dashboardAllowedCidrs": ["10.0.0.0/8"]})}
    install(stack="test", config={**tags, **lb})
    with pytest.raises(ConfigError) as caught:
        run_program(load_settings)
    assert caught.value.key == f"{PROJECT}:tags.Owner" and caught.value.value == "data,platform"
    assert "dashboardAllowedCidrs" in caught.value.allowed
    install(stack="test", config=tags)
    assert run_program(load_settings).tags["Owner"] == "data,platform"
