"""`pulumi destroy` must not hang on a VPC that Kubernetes filled with load balancers and ENIs.

Pulumi deletes a resource only after everything that depends on it is gone: dependents before their
dependencies, children before their parent, resources before their provider. So a Kubernetes object is
guaranteed to be deleted before the cluster, the node groups and the VPC exactly when it (transitively)
depends on them through recorded dependencies, parents or its provider. This test computes that relation
from the mock-recorded graph of every committed stack and a valid delete order from it.

Why node groups too: controllers that remove cloud load balancers and pods that hold ENIs run on the
nodes; deleting nodes first can leave a Service finalizer (and its ELB in the public subnets) behind,
after which the subnets, internet gateway and VPC fail with DependencyViolation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pytest

from testbed.infra.harness import Graph, Node, load_stack_config, run_stack, stack_names, stack_value

CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
IGW = "aws:ec2/internetGateway:InternetGateway"
SERVICE = "kubernetes:core/v1:Service"
K8S_PROVIDER = "pulumi:providers:kubernetes"


# --- the delete-order model -------------------------------------------------------------------


@dataclass(frozen=True)
class Res:
    urn: str
    dependencies: frozenset[str] = frozenset()
    parent: str = ""
    provider: str = ""


def delete_edges(resources: Iterable[Res]) -> dict[str, set[str]]:
    """urn -> the urns that may only be deleted after it (its dependencies, parent and provider)."""
    resources = list(resources)
    known = {r.urn for r in resources}
    return {r.urn: {u for u in (*r.dependencies, r.parent, r.provider) if u in known} for r in resources}


def deleted_before(edges: Mapping[str, set[str]], first: str) -> set[str]:
    """Every urn the engine must keep until `first` is gone (transitive closure of delete_edges)."""
    seen: set[str] = set()
    todo = list(edges.get(first, ()))
    while todo:
        u = todo.pop()
        if u not in seen:
            seen.add(u)
            todo.extend(edges.get(u, ()))
    return seen


def delete_order(edges: Mapping[str, set[str]]) -> list[str]:
    """One valid destroy sequence (reverse topological order); fails on a cycle."""
    waiting_on = {u: 0 for u in edges}  # how many dependents still exist
    for targets in edges.values():
        for t in targets:
            waiting_on[t] += 1
    ready = sorted(u for u, n in waiting_on.items() if n == 0)
    order: list[str] = []
    while ready:
        u = ready.pop(0)
        order.append(u)
        for t in sorted(edges[u]):
            waiting_on[t] -= 1
            if waiting_on[t] == 0:
                ready.append(t)
    assert len(order) == len(edges), "dependency cycle in the recorded graph"
    return order


def from_node(n: Node) -> Res:
    return Res(n.urn, frozenset(n.all_dependencies), n.parent, n.provider_urn)


def test_model_on_a_small_graph():
    vpc, subnet, cluster = (
        Res("vpc"),
        Res("subnet", frozenset({"vpc"})),
        Res("cluster", frozenset({"subnet"})),
    )
    comp = Res("comp")
    prov = Res("prov", frozenset({"cluster"}))
    svc = Res("svc", parent="comp", provider="prov")
    lonely = Res("lonely", parent="comp")
    edges = delete_edges(r for r in [vpc, subnet, cluster, comp, prov, svc, lonely])  # any iterable
    assert deleted_before(edges, "svc") == {"comp", "prov", "cluster", "subnet", "vpc"}
    assert deleted_before(edges, "lonely") == {"comp"}  # a parent alone does not order it before the VPC
    order = delete_order(edges)
    assert order.index("svc") < order.index("prov") < order.index("cluster") < order.index("vpc")
    with pytest.raises(AssertionError, match="cycle"):
        delete_order(delete_edges([Res("a", frozenset({"b"})), Res("b", frozenset({"a"}))]))


# --- the program's graphs ---------------------------------------------------------------------

_GRAPHS: dict[tuple[str, str], Graph] = {}


def graph(stack: str, dask_overrides: Mapping[str, object] | None = None) -> Graph:
    key = (stack, json.dumps(dask_overrides or {}, sort_keys=True))
    if key not in _GRAPHS:
        overrides = {}
        if dask_overrides:
            _, config, _ = load_stack_config(stack)
            dask = json.loads(config.get("adaptive-dask:dask", "{}"))
            overrides["adaptive-dask:dask"] = json.dumps({**dask, **dask_overrides})
        _GRAPHS[key] = run_stack(stack, overrides=overrides)
    return _GRAPHS[key]


def kubernetes_objects(g: Graph) -> list[Node]:
    return [n for n in g.nodes if n.custom and n.type.startswith("kubernetes:")]


def assert_deleted_first(g: Graph, objects: list[Node], targets: list[Node]) -> None:
    edges = delete_edges(from_node(n) for n in g.nodes)
    order = delete_order(edges)
    position = {u: i for i, u in enumerate(order)}
    missing = [
        f"{o.type}::{o.name} is not ordered before {t.type}::{t.name}"
        for o in objects
        for t in targets
        if t.urn not in deleted_before(edges, o.urn)
    ]
    assert not missing, "\n".join(missing)
    assert all(position[o.urn] < position[t.urn] for o in objects for t in targets)


def test_every_stack_is_covered():
    assert {"dev", "prod"} <= set(stack_names())


@pytest.mark.parametrize("stack", stack_names())
def test_kubernetes_objects_are_deleted_before_cluster_node_groups_and_vpc(stack):
    g = graph(stack)
    clusters = g.of_type(CLUSTER)
    if not clusters:
        # a stack without an EKS cluster (target local) creates no AWS network to block
        assert not g.of_type(VPC) and not g.of_type(NODE_GROUP)
        return
    objects = kubernetes_objects(g)
    assert {n.type for n in objects} >= {"kubernetes:apps/v1:Deployment", "kubernetes:helm.sh/v3:Release"}
    assert g.of_type(NODE_GROUP), "no node groups recorded"
    assert_deleted_first(g, objects, [*clusters, *g.of_type(NODE_GROUP), *g.of_type(VPC)])


@pytest.mark.parametrize("stack", stack_names())
def test_kubernetes_provider_waits_for_the_cluster(stack):
    g = graph(stack)
    if not g.of_type(CLUSTER):
        return
    providers = g.of_type(K8S_PROVIDER)
    assert providers
    # every Kubernetes object goes through an explicit provider that hangs off the cluster
    for o in kubernetes_objects(g):
        assert o.provider_urn in {p.urn for p in providers}, o.name
    assert_deleted_first(g, providers, g.of_type(CLUSTER))


INTERNAL_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
}


def balancer_network(g: Graph, service: Node) -> list[Node]:
    """Where the Service's load balancer puts its ENIs: the subnets EKS picks by role tag (internal-elb
    for an internal one, elb for an internet-facing one, which also maps addresses through the IGW)."""
    annotations = (service.inputs.get("metadata") or {}).get("annotations") or {}
    internal = any(annotations.get(k) == v for k, v in INTERNAL_ANNOTATIONS.items())
    role = "kubernetes.io/role/internal-elb" if internal else "kubernetes.io/role/elb"
    subnets = [n for n in g.of_type(SUBNET) if (n.inputs.get("tags") or {}).get(role) == "1"]
    assert subnets, f"no subnet tagged {role} for {service.name}"
    return [*subnets, *g.of_type(VPC), *([] if internal else g.of_type(IGW))]


@pytest.mark.parametrize("stack", stack_names())
def test_exposed_dashboard_load_balancer_goes_before_its_network(stack):
    """A LoadBalancer Service owns ENIs in its subnets (and, internet-facing, public addresses behind the
    IGW): it must be gone before any of them, or their deletion fails with DependencyViolation."""
    if not graph(stack).of_type(CLUSTER):
        return
    g = graph(stack, {"dashboardAllowedCidrs": ["198.51.100.0/24"]})
    balancers = [n for n in g.of_type(SERVICE) if (n.inputs.get("spec") or {}).get("type") == "LoadBalancer"]
    assert balancers, "an allow-listed dashboard should be published through a LoadBalancer Service"
    for svc in balancers:
        assert_deleted_first(
            g, [svc], [*g.of_type(CLUSTER), *g.of_type(NODE_GROUP), *balancer_network(g, svc)]
        )


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_production_protects_the_cluster_its_key_and_the_vpc_from_destroy(stack: str) -> None:
    """A prod destroy used to delete the Dask layer, node groups, addons and access entries before AWS's
    deletion protection stopped it at the cluster. Pulumi refuses to plan the delete of a protected resource,
    so `pulumi destroy` stops before deleting anything; exactly these three carry it."""
    g = run_stack(stack)
    protected = sorted(n.type for n in g.nodes if n.protect)
    if stack_value(stack, "adaptive-dask:production"):
        assert protected == ["aws:ec2/vpc:Vpc", "aws:eks/cluster:Cluster", "aws:kms/key:Key"]
    else:
        assert protected == []
