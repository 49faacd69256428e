"""Egress of the Dask namespace (k8s/network_policies.py), evaluated on the program's own objects.

A small NetworkPolicy evaluator (networking.k8s.io/v1 semantics at both ends of a connection: the source
pod's egress and, for a pod destination, its ingress) runs over the NetworkPolicies and pod templates the
real program registers for each committed stack (the recorded graph under mocks), with peers placed as on
EKS: pods get VPC addresses (VPC CNI), the API server's ENIs sit in the VPC, CoreDNS in kube-system.

ipBlocks match pods' addresses too: the VPC CNI's agent matches by address, and pods live in the VPC.
Nothing here enforces anything; what only a cluster with an enforcing CNI can confirm is in docs/security.md.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from infra.facts.versions import CA_IMAGE_TAGS
from infra.k8s import dask_objects as kd
from infra.k8s import network_policies as np_
from testbed.infra import builders
from testbed.infra.harness import Graph, stack_names, stack_value
from tests.infra.schema import schema_errors, wire_to_json

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
NOTEBOOK = {"app.kubernetes.io/name": "notebook"}
STACKS = stack_names()
AWS_STACKS = [s for s in STACKS if stack_value(s, "adaptive-dask:target", "aws") == "aws"]
LOCAL_STACKS = [s for s in STACKS if s not in AWS_STACKS]


def kubernetes_minor(stack: str) -> str:
    if stack in LOCAL_STACKS:
        return min(CA_IMAGE_TAGS)  # any cluster: the oldest supported minor
    return str({"version": "1.35", **stack_value(stack, "adaptive-dask:cluster", {})}["version"])


# ---------------------------------------------------------------- the evaluator


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: Mapping[str, str]
    ip: str


@dataclass(frozen=True)
class Address:
    ip: str


Peer = Pod | Address


def selects(selector: Mapping | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions); an empty selector selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def namespace_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}  # set by the API server on every namespace


def peer_matches(peer: Mapping, policy_namespace: str, other: Peer) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except") or []
        )
    if not isinstance(other, Pod):
        return False  # selectors select pods only
    if "namespaceSelector" in peer:
        namespace_ok = selects(peer["namespaceSelector"], namespace_labels(other.namespace))
    else:
        namespace_ok = other.namespace == policy_namespace
    return namespace_ok and ("podSelector" not in peer or selects(peer["podSelector"], other.labels))


def port_matches(ports: list | None, port: int, protocol: str) -> bool:
    if not ports:
        return True  # no ports: every port and protocol
    for p in ports:
        assert not isinstance(p.get("port"), str), "named ports are not evaluated here"
        if p.get("protocol", "TCP") != protocol:
            continue
        if p.get("port") is None:
            return True
        low = int(p["port"])
        if low <= port <= int(p.get("endPort", low)):
            return True
    return False


def policy_types(spec: Mapping) -> list[str]:
    return list(spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])])


def allows(policies: list[dict], direction: str, pod: Pod, other: Peer, port: int, protocol: str) -> bool:
    """Does `pod`'s side let a connection of `direction` with `other` through?"""
    governing = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and selects(p["spec"]["podSelector"], pod.labels)
        and direction in policy_types(p["spec"])
    ]
    if not governing:
        return True  # a pod no policy selects for this direction is not isolated
    rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in governing:
        for rule in policy["spec"].get(rules_key) or []:
            peers = rule.get(peers_key) or []
            peer_ok = not peers or any(peer_matches(p, pod.namespace, other) for p in peers)
            if peer_ok and port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def may_reach(policies: list[dict], source: Pod, destination: Peer, port: int, protocol: str = "TCP") -> bool:
    """May `source` open a connection to `destination` on port/protocol (both ends' policies)?"""
    ok = allows(policies, "Egress", source, destination, port, protocol)
    if isinstance(destination, Pod):
        ok = ok and allows(policies, "Ingress", destination, source, port, protocol)
    return ok


# ---------------------------------------------------------------- the program's objects, per stack


@dataclass(frozen=True)
class World:
    policies: list[dict]
    pods: dict[str, Pod]  # the program's pods (by component) plus strangers
    vpc: ipaddress.IPv4Network  # the pods' network (the VPC's on aws)
    kubernetes_service_ip: str | None  # the `kubernetes` Service's ClusterIP (aws)

    def address(self, index: int) -> str:
        return str(self.vpc[index])


def objects(graph: Graph, typ: str) -> list[dict]:
    return [wire_to_json(n.inputs) for n in graph.of_type(typ)]  # type: ignore[misc]


def world(graph: Graph) -> World:
    policies = objects(graph, NETWORK_POLICY)
    [namespace] = {p["metadata"]["namespace"] for p in policies}
    vpcs = [ipaddress.ip_network(n.inputs["cidrBlock"]) for n in graph.of_type("aws:ec2/vpc:Vpc")]
    vpc = vpcs[0] if vpcs else ipaddress.ip_network("10.244.0.0/16")  # a kind-like pod network (local)
    service_ip = None
    for cluster in graph.of_type("aws:eks/cluster:Cluster"):
        service_range = ipaddress.ip_network(cluster.inputs["kubernetesNetworkConfig"]["serviceIpv4Cidr"])
        service_ip = str(service_range[1])  # the API server gives `kubernetes` the range's first address
    pods = {}
    for index, deployment in enumerate(objects(graph, DEPLOYMENT), start=100):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if deployment["metadata"].get("namespace") == namespace:
            component = labels["app.kubernetes.io/component"]
            component = "jupyter" if component == "notebook" else component  # the program's own notebook
            pods[component] = Pod(component, namespace, labels, str(vpc[index]))
    other_stack = {**pods["worker"].labels, "app.kubernetes.io/instance": "adask-other"}
    pods |= {
        "unlabelled": Pod("unlabelled", namespace, {}, str(vpc[200])),
        "notebook": Pod("notebook", namespace, NOTEBOOK, str(vpc[201])),
        "other-stack-worker": Pod("other-stack-worker", "adask-other", other_stack, str(vpc[202])),
        "dns": Pod(
            "coredns-abc12",
            "kube-system",
            {"k8s-app": "kube-dns", "eks.amazonaws.com/component": "coredns"},
            str(vpc[203]),
        ),
    }
    return World(policies, pods, vpc, service_ip)


def overrides(stack: str, extra: dict) -> dict[str, str]:
    """The stack's own `dask` settings plus `extra`, as a CLI override."""
    return {"adaptive-dask:dask": json.dumps({**(stack_value(stack, "adaptive-dask:dask") or {}), **extra})}


EXTRAS = {"headroomWorkers": 1, "allowedClientPods": [NOTEBOOK]}


def todays_policies(policies: list[dict]) -> list[dict]:
    """The same objects in the shape before egress was fenced: ingress-only (what the program shipped)."""
    out = []
    for policy in policies:
        spec = dict(policy["spec"])
        types = [t for t in policy_types(spec) if t != "Egress"]
        if not types:
            continue
        spec.pop("egress", None)
        out.append({**policy, "spec": {**spec, "policyTypes": types}})
    return out


# ---------------------------------------------------------------- the table

# (id, source, destination, port, protocol, allowed?) - the destination is a pod name of the World, an
# address, or a callable World -> address. Stack-independent rows; per-target rows follow.
VPC_ADDRESS = "vpc-address"
SERVICE_IP = "kubernetes-service-ip"

COMMON_ROWS = [
    ("scheduler -> DNS over UDP", "scheduler", "dns", 53, "UDP", True),
    ("scheduler -> DNS over TCP", "scheduler", "dns", 53, "TCP", True),
    ("scheduler -> its worker, a random port", "scheduler", "worker", 41234, "TCP", True),
    ("scheduler -> another stack's worker", "scheduler", "other-stack-worker", 41234, "TCP", False),
    ("scheduler -> IMDS", "scheduler", "169.254.169.254", 80, "TCP", False),
    ("scheduler -> Pod Identity agent", "scheduler", "169.254.170.23", 80, "TCP", False),
    ("scheduler -> the Internet on 80", "scheduler", "8.8.8.8", 80, "TCP", False),
    ("scheduler -> DNS on another port", "scheduler", "dns", 8080, "TCP", False),
    ("worker -> scheduler port", "worker", "scheduler", kd.SCHEDULER_PORT, "TCP", True),
    ("worker -> scheduler dashboard", "worker", "scheduler", kd.DASHBOARD_PORT, "TCP", False),
    ("worker -> worker, a random port", "worker", "worker", 39001, "TCP", True),
    ("worker -> DNS over UDP", "worker", "dns", 53, "UDP", True),
    ("worker -> S3 public range", "worker", "52.216.0.1", 443, "TCP", True),
    ("worker -> the Internet", "worker", "8.8.8.8", 443, "TCP", True),
    ("worker -> IMDS", "worker", "169.254.169.254", 80, "TCP", False),
    ("worker -> Pod Identity agent", "worker", "169.254.170.23", 80, "TCP", True),
    ("unlabelled pod -> the Internet", "unlabelled", "8.8.8.8", 443, "TCP", False),
    ("unlabelled pod -> DNS", "unlabelled", "dns", 53, "UDP", False),
    ("unlabelled pod -> scheduler port", "unlabelled", "scheduler", kd.SCHEDULER_PORT, "TCP", False),
    ("unlabelled pod -> IMDS", "unlabelled", "169.254.169.254", 80, "TCP", False),
]
AWS_ROWS = [
    ("scheduler -> API server ENI (VPC)", "scheduler", VPC_ADDRESS, 443, "TCP", True),
    ("scheduler -> kubernetes Service IP", "scheduler", SERVICE_IP, 443, "TCP", True),
    ("scheduler -> the Internet on 443", "scheduler", "8.8.8.8", 443, "TCP", False),
    ("scheduler -> a VPC address, another port", "scheduler", VPC_ADDRESS, 5432, "TCP", False),
    ("worker -> a VPC address (private denied)", "worker", VPC_ADDRESS, 443, "TCP", False),
    ("worker -> kubernetes Service IP", "worker", SERVICE_IP, 443, "TCP", False),
    ("worker -> a peered 192.168 network", "worker", "192.168.4.7", 5432, "TCP", False),
    ("worker -> another stack's worker", "worker", "other-stack-worker", 39001, "TCP", False),
]
LOCAL_ROWS = [  # the API server's address is unknown: 443/6443/8443 anywhere (config key apiServerCidrs)
    ("scheduler -> an API server on 6443", "scheduler", "172.18.0.2", 6443, "TCP", True),
    ("scheduler -> the Internet on 443 (local default)", "scheduler", "8.8.8.8", 443, "TCP", True),
    ("worker -> a private address (local default: open)", "worker", "172.18.0.5", 9000, "TCP", True),
    ("worker -> other stack, local default", "worker", "other-stack-worker", 39001, "TCP", True),
]


def destination(w: World, name: str) -> Peer:
    if name == VPC_ADDRESS:
        return Address(w.address(10))
    if name == SERVICE_IP:
        assert w.kubernetes_service_ip is not None
        return Address(w.kubernetes_service_ip)
    return w.pods[name] if name in w.pods else Address(name)


def rows_for(stack: str) -> list[tuple]:
    return COMMON_ROWS + (AWS_ROWS if stack in AWS_STACKS else LOCAL_ROWS)


CASES = [(stack, *row) for stack in STACKS for row in rows_for(stack)]


@pytest.mark.parametrize(
    ("stack", "case", "source", "target", "port", "protocol", "allowed"),
    CASES,
    ids=[f"{c[0]}: {c[1]}" for c in CASES],
)
def test_egress_table(stack_graph, stack, case, source, target, port, protocol, allowed):
    w = world(stack_graph(stack))
    assert may_reach(w.policies, w.pods[source], destination(w, target), port, protocol) is allowed, case


def test_each_denied_row_was_allowed_before_egress_was_fenced(stack_graph):
    """The table discriminates: on the ingress-only shape the program shipped before, every row denied
    here by egress alone got through (rows denied by ingress already then are not counted)."""
    flipped = 0
    for stack in STACKS:
        w = world(stack_graph(stack))
        before = todays_policies(w.policies)
        for case, source, target, port, protocol, allowed in rows_for(stack):
            src, dst = w.pods[source], destination(w, target)
            if allowed:
                continue
            ingress_ok = not isinstance(dst, Pod) or allows(before, "Ingress", dst, src, port, protocol)
            if ingress_ok:
                assert may_reach(before, src, dst, port, protocol), (stack, case)
                flipped += 1
    assert flipped >= 3 * len(STACKS)


@pytest.mark.parametrize("stack", STACKS)
def test_headroom_and_client_pods(stack_graph, stack):
    """With placeholders and a client pod configured: placeholders reach nothing (they are pause
    containers), the configured client pod reaches DNS and the scheduler port only."""
    w = world(stack_graph(stack, overrides=overrides(stack, EXTRAS)))
    headroom, notebook, scheduler = w.pods["headroom"], w.pods["notebook"], w.pods["scheduler"]
    assert not may_reach(w.policies, headroom, Address("8.8.8.8"), 443)
    assert not may_reach(w.policies, headroom, w.pods["dns"], 53, "UDP")
    assert not may_reach(w.policies, headroom, scheduler, kd.SCHEDULER_PORT)
    assert not may_reach(w.policies, headroom, Address("169.254.170.23"), 80)
    assert may_reach(w.policies, notebook, scheduler, kd.SCHEDULER_PORT)
    assert may_reach(w.policies, notebook, w.pods["dns"], 53, "UDP")
    assert not may_reach(w.policies, notebook, scheduler, kd.DASHBOARD_PORT)
    assert not may_reach(w.policies, notebook, w.pods["worker"], 39001)
    assert not may_reach(w.policies, notebook, Address("8.8.8.8"), 443)
    # ...and that is not merely the default deny: before, the notebook went anywhere
    assert may_reach(todays_policies(w.policies), notebook, Address("8.8.8.8"), 443)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_worker_private_ranges_follow_the_key(stack_graph, stack):
    """`workerEgressDenyPrivate: false` opens the VPC to workers; IMDS stays closed either way."""
    on = world(stack_graph(stack))
    off = world(stack_graph(stack, overrides=overrides(stack, {"workerEgressDenyPrivate": False})))
    vpc_address = Address(on.address(10))
    assert not may_reach(on.policies, on.pods["worker"], vpc_address, 443)
    assert may_reach(off.policies, off.pods["worker"], vpc_address, 443)
    for w in (on, off):
        assert not may_reach(w.policies, w.pods["worker"], Address("169.254.169.254"), 80)
        assert may_reach(w.policies, w.pods["worker"], Address("169.254.170.23"), 80)
        assert not may_reach(w.policies, w.pods["scheduler"], vpc_address, 5432)


@pytest.mark.parametrize("stack", LOCAL_STACKS)
def test_local_api_server_cidrs_narrow_the_scheduler(stack_graph, stack):
    extra = {"apiServerCidrs": ["172.18.0.2/32"], "apiServerPorts": [6443], "workerEgressDenyPrivate": True}
    w = world(stack_graph(stack, overrides=overrides(stack, extra)))
    scheduler = w.pods["scheduler"]
    assert may_reach(w.policies, scheduler, Address("172.18.0.2"), 6443)
    assert not may_reach(w.policies, scheduler, Address("172.18.0.3"), 6443)
    assert not may_reach(w.policies, scheduler, Address("8.8.8.8"), 443)
    assert not may_reach(w.policies, w.pods["worker"], Address("172.18.0.5"), 9000)


@pytest.mark.parametrize("stack", STACKS)
def test_the_egress_policies_are_valid_for_the_stack_minor(stack_graph, stack):
    graphs = [stack_graph(stack), stack_graph(stack, overrides=overrides(stack, EXTRAS))]
    if stack in AWS_STACKS:
        graphs.append(stack_graph(stack, overrides=overrides(stack, {"workerEgressDenyPrivate": False})))
    for graph in graphs:
        policies = objects(graph, NETWORK_POLICY)
        assert [e for p in policies for e in schema_errors(p, kubernetes_minor(stack))] == []
    names = {p["metadata"]["name"] for p in objects(graphs[1], NETWORK_POLICY)}
    assert {
        "dask-default-deny",
        "dask-scheduler-egress",
        "dask-workers-egress",
        "dask-client-0-egress",
    } <= names


def test_the_schema_check_rejects_a_broken_egress_rule():
    settings = builders.dask(None, target="local", namespace="adask-local")
    [policy] = [
        p
        for p in np_.network_policies(settings, kd.Names(settings.namespace))
        if p["metadata"]["name"] == "dask-workers-egress"
    ]
    policy["spec"]["egress"][3]["to"][0]["ipBlock"]["except"] = "169.254.169.254/32"  # a string, not a list
    assert schema_errors(policy, "1.33")


# ---------------------------------------------------------------- the objects' details


@pytest.mark.parametrize("stack", STACKS)
def test_workers_name_the_scheduler_as_its_service_selects_it(stack_graph, stack):
    """The VPC CNI's controller allows a Service's ClusterIP only when the Service selector equals the
    egress podSelector: workers dial the scheduler through its Service."""
    graph = stack_graph(stack)
    [service] = [s for s in objects(graph, SERVICE) if s["metadata"]["name"] == "dask-scheduler"]
    [workers] = [p for p in objects(graph, NETWORK_POLICY) if p["metadata"]["name"] == "dask-workers-egress"]
    [rule] = [r for r in workers["spec"]["egress"] if r.get("ports") == [{"protocol": "TCP", "port": 8786}]]
    assert rule["to"] == [{"podSelector": {"matchLabels": service["spec"]["selector"]}}]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_aws_api_server_cidrs_are_the_vpc_and_the_kubernetes_service(stack_graph, stack):
    w = world(stack_graph(stack))
    [scheduler] = [p for p in w.policies if p["metadata"]["name"] == "dask-scheduler-egress"]
    blocks = [
        peer["ipBlock"] for rule in scheduler["spec"]["egress"] for peer in rule["to"] if "ipBlock" in peer
    ]
    assert blocks == [{"cidr": str(w.vpc)}, {"cidr": f"{w.kubernetes_service_ip}/32"}]


def test_every_vpc_and_service_range_the_config_accepts_is_private():
    """Deny-private covers the VPC and the Service range whatever CIDRs the stack picks."""
    from infra.config import aws as aws_config  # its ranges are private; read, not copied

    private = [ipaddress.ip_network(r) for r in np_.PRIVATE_RANGES]
    ranges = [
        ipaddress.ip_network(r) for r in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
    ]
    assert {str(r) for r in aws_config._PRIVATE_RANGES} == {str(r) for r in ranges}
    assert all(any(r.subnet_of(p) for p in private) for r in ranges)


def test_worker_except_list():
    local = builders.dask(None, target="local", namespace="adask-local")
    assert local.worker_egress_deny_private is False
    assert np_.worker_egress_except(local) == ["169.254.169.254/32"]
    aws = builders.dask(None, cluster=builders.aws((builders.group("spot", ("m6i.2xlarge",)),)))
    assert aws.worker_egress_deny_private is True
    assert np_.worker_egress_except(aws) == [
        "10.0.0.0/8",
        "100.64.0.0/10",
        "169.254.169.254/32",
        "172.16.0.0/12",
        "192.168.0.0/16",
    ]
    assert not any(
        ipaddress.ip_address("169.254.170.23") in ipaddress.ip_network(n)
        for n in np_.worker_egress_except(aws)
    )


# ---------------------------------------------------------------- the in-cluster notebook (dask.jupyter)

NOTEBOOK_POLICIES = {"dask-notebook-egress", "dask-scheduler-from-notebook"}
OUTSIDE = [("8.8.8.8", 443), ("52.216.0.1", 443), ("169.254.169.254", 80), ("169.254.170.23", 80)]
OUTSIDE += [("192.168.4.7", 5432), ("172.18.0.5", 9000)]


def notebook_world(stack_graph, stack: str) -> World:
    return world(stack_graph(stack, overrides=builders.jupyter_overrides(stack)))


@pytest.mark.parametrize("stack", STACKS)
def test_the_notebook_reaches_the_scheduler_and_otherwise_only_what_workers_reach_outside(stack_graph, stack):
    w = notebook_world(stack_graph, stack)
    lab, scheduler, worker = w.pods["jupyter"], w.pods["scheduler"], w.pods["worker"]
    assert may_reach(w.policies, lab, scheduler, kd.SCHEDULER_PORT)
    assert may_reach(w.policies, lab, scheduler, kd.DASHBOARD_PORT)  # the lab proxies the dashboard
    assert may_reach(w.policies, lab, w.pods["dns"], 53, "UDP")
    assert not may_reach(w.policies, lab, scheduler, 9999)
    for port in (39001, kd.WORKER_DASHBOARD_PORT):
        assert not may_reach(w.policies, lab, worker, port)
    stranger = w.pods["other-stack-worker"]  # by address only, as the workers' own egress decides
    assert may_reach(w.policies, lab, stranger, 39001) == (stack in LOCAL_STACKS)
    assert may_reach(w.policies, lab, stranger, 39001) == may_reach(w.policies, worker, stranger, 39001)
    # the API server as the scheduler reaches it (the init container fills the token Secret)
    api = [(w.address(10), 443), (w.kubernetes_service_ip, 443)] if w.kubernetes_service_ip else []
    api = api or [("172.18.0.2", 6443)]
    for ip, port in api:
        assert may_reach(w.policies, lab, Address(ip), port), ip
        assert may_reach(w.policies, lab, Address(ip), port) == may_reach(
            w.policies, scheduler, Address(ip), port
        )
    if stack in AWS_STACKS:
        assert not may_reach(w.policies, lab, Address(w.address(10)), 5432)  # not the VPC otherwise
    for ip, port in OUTSIDE:
        assert may_reach(w.policies, lab, Address(ip), port) == may_reach(
            w.policies, worker, Address(ip), port
        ), ip
    # nobody opens the lab: port-forward arrives inside the pod, not through the network
    for name, other in w.pods.items():
        if name != "jupyter":
            assert not may_reach(w.policies, other, lab, 8888), name


@pytest.mark.parametrize("stack", STACKS)
def test_the_notebook_adds_nothing_else(stack_graph, stack):
    """The policies with the notebook are those without it plus its two; and with those two taken out,
    every connection between the other pods (and to the outside) is decided exactly as before."""
    on = notebook_world(stack_graph, stack)
    off = stack_graph(stack, overrides=overrides(stack, {"jupyter": {"enabled": False}}))
    rest = [p for p in on.policies if p["metadata"]["name"] not in NOTEBOOK_POLICIES]
    assert {p["metadata"]["name"] for p in on.policies} - {
        p["metadata"]["name"] for p in rest
    } == NOTEBOOK_POLICIES
    by_name = {p["metadata"]["name"]: p for p in objects(off, NETWORK_POLICY)}
    assert {p["metadata"]["name"]: p for p in rest} == by_name
    others = [p for n, p in on.pods.items() if n != "jupyter"]
    targets: list[Peer] = [*others, *(Address(ip) for ip, _ in OUTSIDE)]
    ports = [
        (53, "UDP"),
        (kd.SCHEDULER_PORT, "TCP"),
        (kd.DASHBOARD_PORT, "TCP"),
        (39001, "TCP"),
        (443, "TCP"),
    ]
    for source in others:
        for target in targets:
            for port, protocol in ports:
                before = may_reach(rest, source, target, port, protocol)
                assert may_reach(on.policies, source, target, port, protocol) == before, (
                    source,
                    target,
                    port,
                )


# ---------------------------------------------------------------- a real API server (1.20)


def _pending_pod(name: str, labels: Mapping[str, str]) -> dict:
    """A pod that only has to exist to be selected: it stays Pending (no node matches)."""
    tiny = {"cpu": "10m", "memory": "16Mi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "containers": [{"name": "c", "image": "x", "resources": {"requests": tiny, "limits": tiny}}],
            "nodeSelector": {"nowhere": "true"},
        },
    }


@pytest.mark.kube
@pytest.mark.parametrize("stack", ["dev", "local"])
def test_the_api_server_stores_the_policies_and_selects_the_intended_pods(
    kube, namespace, stack_graph, stack
):
    """The apiserver's own validation (e.g. each `except` strictly inside its `cidr`, which the OpenAPI schema
    cannot say) accepts every policy, stores it unchanged, and its label selection of the egress policies'
    pods and pod peers is the evaluator's. It stores policies and enforces none."""
    admin = kube.rest()
    w = world(stack_graph(stack, overrides=overrides(stack, EXTRAS)))
    local = {
        name: pod for name, pod in w.pods.items() if pod.namespace == w.policies[0]["metadata"]["namespace"]
    }
    for name, pod in local.items():
        admin.post(f"/api/v1/namespaces/{namespace}/pods", _pending_pod(name, pod.labels))
    path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
    for policy in w.policies:
        sent = {**policy, "metadata": {**policy["metadata"], "namespace": namespace}}
        stored = admin.post(path, sent)
        assert stored["spec"] == {k: v for k, v in policy["spec"].items() if v != []}, policy["metadata"][
            "name"
        ]

    def selected(selector: Mapping) -> set[str]:
        labels = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
        return {
            p["metadata"]["name"]
            for p in admin.items(f"/api/v1/namespaces/{namespace}/pods", labelSelector=labels)
        }

    for policy in admin.items(path):
        spec = policy["spec"]
        expected = {name for name, pod in local.items() if selects(spec["podSelector"], pod.labels)}
        assert selected(spec["podSelector"]) == expected, policy["metadata"]["name"]
        for rule in spec.get("egress") or []:
            for peer in rule.get("to") or []:
                if set(peer) == {"podSelector"}:
                    expected = {
                        name for name, pod in local.items() if selects(peer["podSelector"], pod.labels)
                    }
                    assert selected(peer["podSelector"]) == expected
    deny = admin.get(f"{path}/dask-default-deny")["spec"]
    assert selected(deny["podSelector"]) == set(local) and deny["policyTypes"] == ["Ingress", "Egress"]
