"""Warm headroom (issue 13 §2): placeholder pods holding room for `dask.headroomWorkers` workers.

Each placeholder asks for exactly what a worker asks for, on the worker pools, at a priority below the
workers'. When a burst adds worker pods, kube-scheduler preempts placeholders and the workers start at
once on a node that is already running; the evicted placeholders go Pending, and cluster-autoscaler adds
a node for them in the background. The price is the idle nodes they hold: `headroomWorkers` worker slots,
all the time (docs/cost.md).

Why priority -1 (the value of cluster-autoscaler's own over-provisioning recipe): below the workers' 0 so
they are preempted, and not below CA's `--expendable-pods-priority-cutoff` (-10, pinned in its flags) so
a Pending placeholder still makes CA add a node, and a node holding one is not "unneeded".
`preemptionPolicy: Never`: a placeholder must never displace anything itself.

The preload never sees placeholders: it counts only pods the worker Deployment's ReplicaSets own.
"""

from __future__ import annotations

from infra.config.settings import DaskSettings
from infra.facts.placement import HEADROOM_PRIORITY
from infra.k8s import dask_objects as kd
from infra.k8s.dask_objects import Names

COMPONENT = "headroom"
DEPLOYMENT = "dask-headroom"
# The pause container (Kubernetes' own), pinned; it does nothing and runs as the non-root user 65535.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
PAUSE_USER = 65535


def priority_class_name(names: Names) -> str:
    return f"{names.namespace}-{DEPLOYMENT}"  # cluster-scoped: named per stack


def priority_class(settings: DaskSettings, names: Names) -> dict:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {
            "name": priority_class_name(names),
            "labels": kd.labels(names, COMPONENT, settings.dask_version),
        },
        "value": HEADROOM_PRIORITY,
        "globalDefault": False,
        "preemptionPolicy": "Never",
        "description": "Placeholders holding warm room for Dask workers; preempted by any worker pod.",
    }


def placeholder_deployment(settings: DaskSettings, names: Names) -> dict:
    """`headroomWorkers` pause pods sized, placed and packed like the stack's worker pods."""
    version = settings.dask_version
    # Placeholders prefer each other's node: after a burst preempts them they come back through new nodes,
    # and spread over several (as when they preferred the workers', measured by benchmarks/node_cost.py)
    # each partly-held node waits to be drained one at a time. Together they hold whole nodes.
    placement = kd.worker_pool_placement(settings, names, COMPONENT)
    container = {
        "name": "pause",
        "image": PAUSE_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "resources": kd.guaranteed_resources(settings.worker.cpu_millicores, settings.worker.memory_mib),
        "securityContext": kd.container_security_context(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        # Pulumi need not wait for placeholders to run: they may wait for a node like any worker.
        "metadata": kd.object_meta(
            DEPLOYMENT, names, COMPONENT, version, annotations={kd.SKIP_AWAIT: "true"}
        ),
        "spec": {
            "replicas": settings.headroom_workers,
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": kd.selector_labels(names, COMPONENT)},
            "template": {
                "metadata": {
                    "labels": kd.labels(names, COMPONENT, version),
                    # holds nothing: cluster-autoscaler may always move it
                    "annotations": {kd.SAFE_TO_EVICT: "true"},
                },
                "spec": {
                    "priorityClassName": priority_class_name(names),
                    "serviceAccountName": names.worker,  # no token (the worker account mounts none)
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 0,
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": PAUSE_USER,
                        "runAsGroup": PAUSE_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    **placement,
                },
            },
        },
    }
