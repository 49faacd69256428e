"""The Dask namespace's NetworkPolicies (plain dicts): deny all ingress and egress, then allow exactly the
Dask traffic in, and out only what each component needs.

Enforced on EKS once the vpc-cni addon enables it (`infra.aws.cluster.VPC_CNI_CONFIGURATION`); the
control plane of the tests stores and selects them but enforces nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from infra.config.settings import DaskSettings
from infra.k8s import dask_objects as kd
from infra.k8s import jupyter
from infra.k8s.dask_objects import Names

SelectorLabels = Mapping[str, str]

# The EC2 instance metadata service: the node role's credentials. The EKS Pod Identity agent, which hands
# out the pods' own credentials, is another link-local address (169.254.170.23) and stays reachable.
IMDS = "169.254.169.254/32"
# Private address space: RFC 1918 and RFC 6598's shared space (VPC secondary CIDRs, EKS custom networking).
# Every VPC CIDR the aws target accepts lies inside these (infra/config/aws.py), as does the Service range.
PRIVATE_RANGES = ("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16")
# Cluster DNS: CoreDNS pods, labelled like this by EKS, kubeadm, kind and k3s. The label equals the kube-dns
# Service's selector, which lets the VPC CNI's controller also allow that Service's ClusterIP.
DNS_NAMESPACE = {"kubernetes.io/metadata.name": "kube-system"}
DNS_PODS = {"k8s-app": "kube-dns"}


# ---------------------------------------------------------------- shared selectors


def stack_pod_labels(names: Names) -> dict[str, str]:
    """The labels every Dask pod of this stack (scheduler and workers) carries, and nothing else does.

    Derived as the common part of the two selectors, so it cannot drift from dask_objects.
    """
    scheduler = kd.selector_labels(names, "scheduler")
    worker = kd.selector_labels(names, "worker")
    return {k: v for k, v in scheduler.items() if worker.get(k) == v}


# ---------------------------------------------------------------- NetworkPolicy (issue 12 §2)


def _policy(
    name: str,
    names: Names,
    version: str,
    pod_selector: dict,
    ingress: list[dict] | None = None,
    egress: list[dict] | None = None,
) -> dict:
    """A policy for the directions given (None: that direction is not governed by this policy)."""
    spec: dict = {"podSelector": pod_selector, "policyTypes": []}
    for direction, rules in (("Ingress", ingress), ("Egress", egress)):
        if rules is not None:
            spec["policyTypes"].append(direction)
            spec[direction.lower()] = rules
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": kd.object_meta(name, names, "network-policy", version),
        "spec": spec,
    }


def _tcp(port: int) -> dict:
    return {"protocol": "TCP", "port": port}


def _dns_rule() -> dict:
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": dict(DNS_NAMESPACE)},
                "podSelector": {"matchLabels": dict(DNS_PODS)},
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def worker_egress_except(settings: DaskSettings) -> list[str]:
    """The addresses workers may not reach outside the Dask pods and DNS: IMDS, and with
    `worker_egress_deny_private` every private range (the VPC, the Service range, peered networks)."""
    blocked = [ipaddress.ip_network(IMDS)]
    if settings.worker_egress_deny_private:
        blocked += [ipaddress.ip_network(r) for r in PRIVATE_RANGES]
    return [str(n) for n in ipaddress.collapse_addresses(blocked)]


def egress_policies(
    settings: DaskSettings, names: Names, client_pods: Sequence[SelectorLabels]
) -> list[dict]:
    """What each pod of the namespace may open; the default deny leaves every other pod nothing.

    - scheduler -> cluster DNS, the API server (`settings.api_server_cidrs` on `api_server_ports`, TCP) and
      this stack's workers on any port (it dials their random worker ports). Nothing else: it runs any
      client's code and holds the scaling token, so it must not reach IMDS or the Internet. On aws the
      API server's CIDRs include the whole VPC (its ENIs move), so HTTPS inside the VPC stays reachable;
      `dask.apiServerCidrs` narrows it (docs/configuration-reference.md).
    - workers -> DNS, the scheduler port, each other on any port (transfers), and any IPv4 address except
      `worker_egress_except` (IMDS always; the private ranges when configured). S3 through the VPC's gateway
      endpoint keeps working: a gateway endpoint is a route-table entry for S3's prefix list, so the packets
      still go to S3's public addresses, which `0.0.0.0/0` minus private ranges admits. Interface endpoints
      (private addresses in the VPC) are refused while the private ranges are.
    - `client_pods` (pods of this namespace allowed to the scheduler port) -> DNS and the scheduler port.
    - the headroom placeholders (pause containers) and any other pod: nothing.

    Workers reach the scheduler through its Service: an enforcer matching before kube-proxy's DNAT (the VPC
    CNI's eBPF agent) sees the ClusterIP, which its controller allows only when the Service's selector
    equals this podSelector - hence `selector_labels(names, "scheduler")` on both.
    """
    version = settings.dask_version
    scheduler = {"matchLabels": kd.selector_labels(names, "scheduler")}
    workers = {"matchLabels": kd.selector_labels(names, "worker")}
    to_scheduler = {"to": [{"podSelector": scheduler}], "ports": [_tcp(kd.SCHEDULER_PORT)]}
    api_server = {
        "to": [{"ipBlock": {"cidr": c}} for c in settings.api_server_cidrs],
        "ports": [_tcp(p) for p in settings.api_server_ports],
    }
    world = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": worker_egress_except(settings)}}]}
    policies = [
        _policy(
            "dask-scheduler-egress",
            names,
            version,
            scheduler,
            egress=[_dns_rule(), api_server, {"to": [{"podSelector": workers}]}],
        ),
        _policy(
            "dask-workers-egress",
            names,
            version,
            workers,
            egress=[_dns_rule(), to_scheduler, {"to": [{"podSelector": workers}]}, world],
        ),
    ]
    # One policy per selector: a podSelector cannot express "any of these label sets".
    policies += [
        _policy(
            f"dask-client-{i}-egress",
            names,
            version,
            {"matchLabels": dict(s)},
            egress=[_dns_rule(), to_scheduler],
        )
        for i, s in enumerate(client_pods)
    ]
    return policies


def network_policies(
    settings: DaskSettings,
    names: Names,
    client_namespaces: Sequence[SelectorLabels] = (),
    client_pods: Sequence[SelectorLabels] = (),
) -> list[dict]:
    """The Dask namespace's policies: deny all in and out, then allow exactly the Dask traffic.

    - default deny: every pod in the namespace, ingress and egress, no rule; the egress allowances are
      `egress_policies`' (above). The ingress ones:
    - scheduler <- this stack's workers on the scheduler port (workers dial it; nothing else of ours does).
    - workers <- this stack's Dask pods (scheduler and workers) on ANY port: `dask worker` is started
      without `--worker-port`/`--nanny-port` (dask_adaptive/command.py), so both listen on random ports
      and the peers are pinned by pod selector instead of by port.
    - scheduler <- clients on the scheduler port, only from `client_namespaces` (namespace label
      selectors: every pod there) and `client_pods` (pod label selectors, pods of the Dask namespace).
      Nothing is emitted when both are empty. Clients get no worker ports: a Client that is not itself
      in a worker gathers and scatters through the scheduler (distributed's `direct_to_workers=None`).
      `kubectl port-forward` goes through the kubelet and is not subject to NetworkPolicy, so it keeps
      working for holders of the RBAC right to use it.
    - dashboard port <- `settings.dashboard_cidrs` (ipBlock), only when that list is set.

    Kubelet probes need no rule on EKS: the VPC CNI's policy agent (aws-network-policy-agent) puts the
    node's own IP into every pod's ingress allow-map, whatever the policies say. That is agent PR #65
    (fixing issue #56 and amazon-vpc-cni-k8s#2571, where default-deny policies dropped probes), released
    with VPC CNI v1.15.1; agent PR #636 (2026) restates it for the namespaced-policy path in `strict` mode
    too, and only fixed the ClusterNetworkPolicy path. It matters here: a dropped worker readiness probe
    marks the worker NotReady, and NotReady workers are the ones a scale-down removes first.
    """
    version = settings.dask_version
    scheduler = {"matchLabels": kd.selector_labels(names, "scheduler")}
    workers = {"matchLabels": kd.selector_labels(names, "worker")}
    stack = {"matchLabels": stack_pod_labels(names)}
    policies = [
        _policy("dask-default-deny", names, version, {}, ingress=[], egress=[]),
        _policy(
            "dask-scheduler-from-workers",
            names,
            version,
            scheduler,
            [{"from": [{"podSelector": workers}], "ports": [_tcp(kd.SCHEDULER_PORT)]}],
        ),
        # No `ports`: worker and nanny ports are random (see the docstring).
        _policy("dask-workers-from-dask", names, version, workers, [{"from": [{"podSelector": stack}]}]),
    ]
    peers = [{"namespaceSelector": {"matchLabels": dict(s)}} for s in client_namespaces]
    peers += [{"podSelector": {"matchLabels": dict(s)}} for s in client_pods]
    if peers:
        policies.append(
            _policy(
                "dask-scheduler-from-clients",
                names,
                version,
                scheduler,
                [{"from": peers, "ports": [_tcp(kd.SCHEDULER_PORT)]}],
            )
        )
    if settings.dashboard_cidrs:
        # Behind the NLB of `services.dashboard_service` the source address is the client's only if the NLB
        # preserves it (ip targets, or `externalTrafficPolicy: Local`); otherwise it is a node address.
        policies.append(
            _policy(
                "dask-dashboard-from-cidrs",
                names,
                version,
                scheduler,
                [
                    {
                        "from": [{"ipBlock": {"cidr": c}} for c in settings.dashboard_cidrs],
                        "ports": [_tcp(kd.DASHBOARD_PORT)],
                    }
                ],
            )
        )
    policies += metrics_policies(settings, names)
    return policies + egress_policies(settings, names, client_pods) + notebook_policies(settings, names)


def notebook_policies(settings: DaskSettings, names: Names) -> list[dict]:
    """The in-cluster notebook (`dask.jupyter`), when enabled; nothing otherwise.

    - notebook -> DNS, the scheduler's comm and dashboard ports (the lab proxies the dashboard), the API
      server as the scheduler reaches it (`api_server_cidrs` on `api_server_ports`: its init container
      fills the token Secret; the lab itself holds no API credentials), and the addresses workers may
      reach outside the cluster (`worker_egress_except`: pip, object stores). Not the workers: a Client
      outside a worker gathers through the scheduler. On aws the API rule opens HTTPS to the VPC, as for
      the scheduler; `dask.apiServerCidrs` narrows both.
    - scheduler <- the notebook on those two ports.
    - notebook <- nothing: the default deny stands. Users arrive with `kubectl port-forward`, which the
      kubelet delivers inside the pod's own network namespace (not subject to NetworkPolicy), and the
      kubelet's probes are admitted by the VPC CNI's agent whatever the policies (see
      `network_policies`). Allowing the lab port even from the namespace would let any pod there try
      the token.
    """
    if not settings.jupyter.enabled:
        return []
    version = settings.dask_version
    scheduler = {"matchLabels": kd.selector_labels(names, "scheduler")}
    notebook = {"matchLabels": jupyter.selector_labels(names)}
    ports = [_tcp(kd.SCHEDULER_PORT), _tcp(kd.DASHBOARD_PORT)]
    world = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": worker_egress_except(settings)}}]}
    api_server = {
        "to": [{"ipBlock": {"cidr": c}} for c in settings.api_server_cidrs],
        "ports": [_tcp(p) for p in settings.api_server_ports],
    }
    return [
        _policy(
            "dask-notebook-egress",
            names,
            version,
            notebook,
            egress=[_dns_rule(), {"to": [{"podSelector": scheduler}], "ports": ports}, api_server, world],
        ),
        _policy(
            "dask-scheduler-from-notebook",
            names,
            version,
            scheduler,
            [{"from": [{"podSelector": notebook}], "ports": ports}],
        ),
    ]


# The label Kubernetes sets on every namespace to its own name: from 1.21 on (NamespaceDefaultLabelName,
# GA in 1.22). On an older cluster (the 1.20 of the tests) it must be set by hand (docs/monitoring.md).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def metrics_policies(settings: DaskSettings, names: Names) -> list[dict]:
    """`dask.monitoring.prometheusNamespaces`: pods of exactly those namespaces may open the scheduler's and
    the workers' dashboard ports, where `/metrics` is served (the whole dashboard: NetworkPolicy cannot
    tell paths apart; never the scheduler's comm port). Nothing when the list is empty."""
    namespaces = settings.monitoring.prometheus_namespaces
    if not namespaces:
        return []
    peers = {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": list(namespaces)}
    return [
        _policy(
            "dask-metrics-from-prometheus",
            names,
            settings.dask_version,
            {"matchLabels": stack_pod_labels(names)},
            [
                {
                    "from": [{"namespaceSelector": {"matchExpressions": [peers]}}],
                    "ports": [_tcp(kd.DASHBOARD_PORT), _tcp(kd.WORKER_DASHBOARD_PORT)],
                }
            ],
        )
    ]
