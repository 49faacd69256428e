"""The Dask namespace's NetworkPolicies (plain dicts): deny all ingress, then allow exactly the Dask traffic.

Enforced on EKS once the vpc-cni addon enables it (`infra.aws.cluster.VPC_CNI_CONFIGURATION`); the
control plane of the tests stores and selects them but enforces nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from infra.config.settings import DaskSettings
from infra.k8s import dask_objects as kd
from infra.k8s.dask_objects import Names

SelectorLabels = Mapping[str, str]


# ---------------------------------------------------------------- shared selectors


def stack_pod_labels(names: Names) -> dict[str, str]:
    """The labels every Dask pod of this stack (scheduler and workers) carries, and nothing else does.

    Derived as the common part of the two selectors, so it cannot drift from dask_objects.
    """
    scheduler = kd.selector_labels(names, "scheduler")
    worker = kd.selector_labels(names, "worker")
    return {k: v for k, v in scheduler.items() if worker.get(k) == v}


# ---------------------------------------------------------------- NetworkPolicy (issue 12 §2)


def _policy(name: str, names: Names, version: str, pod_selector: dict, ingress: list[dict]) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": kd.object_meta(name, names, "network-policy", version),
        "spec": {"podSelector": pod_selector, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def _tcp(port: int) -> dict:
    return {"protocol": "TCP", "port": port}


def network_policies(
    settings: DaskSettings,
    names: Names,
    client_namespaces: Sequence[SelectorLabels] = (),
    client_pods: Sequence[SelectorLabels] = (),
) -> list[dict]:
    """Ingress policies of the Dask namespace: deny all, then allow exactly the Dask traffic.

    - default deny: every pod in the namespace, no ingress rule (egress stays open: workers fetch data).
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
        _policy("dask-default-deny-ingress", names, version, {}, []),
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
    return policies
