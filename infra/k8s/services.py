"""Pure builders for the scheduler's Services: the in-cluster ClusterIP and the optional dashboard load
balancer (plain dicts, wire names), and how a user reaches the dashboard without one."""

from __future__ import annotations

from collections.abc import Mapping

from infra.aws.tags import LOAD_BALANCER_TAGS_ANNOTATION, load_balancer_tags
from infra.k8s.dask_objects import (
    DASHBOARD_PORT,
    SCHEDULER_PORT,
    SKIP_AWAIT,
    Names,
    object_meta,
    selector_labels,
)


def scheduler_service(names: Names, version: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(names.scheduler, names, "scheduler", version),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(names, "scheduler"),
            "ports": [
                {"name": "tcp-comm", "port": SCHEDULER_PORT, "targetPort": "tcp-comm", "protocol": "TCP"},
                {
                    "name": "http-dashboard",
                    "port": DASHBOARD_PORT,
                    "targetPort": "http-dashboard",
                    "protocol": "TCP",
                },
            ],
        },
    }


def dashboard_service(
    names: Names, version: str, cidrs: tuple[str, ...], target: str, tags: Mapping[str, str] | None = None
) -> dict:
    """Only built when an allow-list exists: an internal NLB (aws) reachable from those CIDRs only, carrying
    the stack's cost-allocation `tags` (provider default tags never reach what Kubernetes creates)."""
    if target == "aws":
        annotations = {
            "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
            "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
        }
        if tags:
            annotations[LOAD_BALANCER_TAGS_ANNOTATION] = load_balancer_tags(tags)
    else:
        # kind/minikube often have no load-balancer controller: do not hold `pulumi up` for an address.
        annotations = {SKIP_AWAIT: "true"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(names.dashboard, names, "scheduler", version, annotations=annotations),
        "spec": {
            "type": "LoadBalancer",
            # Keeps the client's source address, which the dashboard's NetworkPolicy (ipBlock) checks.
            "externalTrafficPolicy": "Local",
            "selector": selector_labels(names, "scheduler"),
            "loadBalancerSourceRanges": list(cidrs),
            "ports": [
                {
                    "name": "http-dashboard",
                    "port": DASHBOARD_PORT,
                    "targetPort": "http-dashboard",
                    "protocol": "TCP",
                }
            ],
        },
    }


def port_forward_instructions(names: Names) -> str:
    return (
        f"kubectl -n {names.namespace} port-forward svc/{names.scheduler} {DASHBOARD_PORT}:{DASHBOARD_PORT}"
        f"  # then open http://localhost:{DASHBOARD_PORT}/status"
    )
