"""The namespace's budget and pod rules (plain dicts): ResourceQuota, Pod Security Admission labels, the
scheduler's PriorityClass, and the tokenless `default` ServiceAccount. (The `restricted` checker the tests
hold the pod templates to lives in tests/infra/pod_security.py.)"""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra.config.settings import DaskSettings
from infra.facts.quantity import format_cpu_millicores, format_memory_mib
from infra.k8s import dask_objects as kd
from infra.k8s import rbac
from infra.k8s.dask_objects import Names

# ---------------------------------------------------------------- ResourceQuota (issue 12 §3)

# Rolling-update margin. The scheduler Deployment is `Recreate`, but a scheduler pod that is evicted or
# deleted (node drain, preemption) still counts against the quota while it terminates, and its
# ReplicaSet creates the replacement at once: one extra scheduler. A worker pod the preload deletes
# directly (backend.py `_remove` (b)/(d)) terminates for up to its grace period while its ReplicaSet
# already creates the replacement that the following /scale decrement removes: one extra worker lets that
# proceed without a FailedCreate. More overlap only delays creation until a terminating pod is gone.
EXTRA_SCHEDULERS = 1
EXTRA_WORKERS = 1


@dataclass(frozen=True)
class QuotaBudget:
    pods: int
    cpu_millicores: int  # requests and limits alike: every Dask pod has requests == limits
    memory_mib: int


def quota_budget(settings: DaskSettings) -> QuotaBudget:
    """max_workers workers + the scheduler + the margin above, at their configured sizes; headroom
    placeholders are worker-sized and count too (or they would eat the workers' budget), and so does
    the in-cluster notebook when enabled."""
    workers = settings.max_workers + EXTRA_WORKERS + settings.headroom_workers
    schedulers = 1 + EXTRA_SCHEDULERS
    # The notebook (one pod: its Deployment is `Recreate`, its init container asks for less than the lab)
    notebooks = 1 if settings.jupyter.enabled else 0
    return QuotaBudget(
        pods=workers + schedulers + notebooks,
        cpu_millicores=workers * settings.worker.cpu_millicores
        + schedulers * settings.scheduler_cpu_millicores
        + notebooks * settings.jupyter.cpu_millicores,
        memory_mib=workers * settings.worker.memory_mib
        + schedulers * settings.scheduler_memory_mib
        + notebooks * settings.jupyter.memory_mib,
    )


def resource_quota(settings: DaskSettings, names: Names) -> dict:
    """Caps what a buggy or stolen scaler can spend: a ReplicaSet over it gets FailedCreate, not pods.

    With cpu/memory in the quota every pod of the namespace must declare requests and limits for both
    (the Dask pods do: requests == limits), and any other pod there (a client notebook) needs room the
    budget does not reserve: clients belong in their own namespace. The worker Deployment's default
    rolling update (maxSurge 25%) fits only one surge pod; beyond that the rollout waits for old pods.
    """
    budget = quota_budget(settings)
    cpu, memory = format_cpu_millicores(budget.cpu_millicores), format_memory_mib(budget.memory_mib)
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": kd.object_meta("dask-budget", names, "quota", settings.dask_version),
        "spec": {
            "hard": {
                "pods": str(budget.pods),
                "requests.cpu": cpu,
                "requests.memory": memory,
                "limits.cpu": cpu,
                "limits.memory": memory,
            }
        },
    }


# ---------------------------------------------------------------- Pod Security Admission (issue 12 §3)

PSA_PREFIX = "pod-security.kubernetes.io"
PSA_LEVEL = "restricted"


def pod_security_version(kubernetes_version: str | None) -> str:
    """`v<major>.<minor>` of the cluster, or `latest` when the program does not know it (local target)."""
    if kubernetes_version is None:
        return "latest"
    match = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?", kubernetes_version.strip())
    if not match:
        raise ValueError(f"not a Kubernetes version: {kubernetes_version!r}")
    return f"v{match[1]}.{match[2]}"


def pod_security_labels(kubernetes_version: str | None) -> dict[str, str]:
    """`restricted` enforced at the cluster's own minor, audited and warned at `latest`.

    Enforce is pinned so a control-plane upgrade cannot start rejecting the stack's pods on its own (a
    refused worker pod is a silent capacity loss); the pin moves with the cluster version in config, and
    audit/warn at `latest` report in advance what a newer `restricted` would refuse.
    """
    return {
        f"{PSA_PREFIX}/enforce": PSA_LEVEL,
        f"{PSA_PREFIX}/enforce-version": pod_security_version(kubernetes_version),
        f"{PSA_PREFIX}/audit": PSA_LEVEL,
        f"{PSA_PREFIX}/audit-version": "latest",
        f"{PSA_PREFIX}/warn": PSA_LEVEL,
        f"{PSA_PREFIX}/warn-version": "latest",
    }


def namespace(settings: DaskSettings, names: Names, kubernetes_version: str | None) -> dict:
    """dask_objects' Namespace plus the Pod Security Admission labels (a drop-in for it)."""
    ns = kd.namespace(names, settings.dask_version)
    ns["metadata"]["labels"] = {**ns["metadata"]["labels"], **pod_security_labels(kubernetes_version)}
    return ns


# ---------------------------------------------------------------- PriorityClass, default ServiceAccount

# Far above the default 0 of ordinary pods (and of the workers), far below the system classes
# (2000000000+) and the 1000000000 ceiling for user-defined classes.
SCHEDULER_PRIORITY = 100_000


def priority_class_name(names: Names) -> str:
    """The scheduler Deployment's `priorityClassName`."""
    return names.scheduler_priority_class


def scheduler_priority_class(settings: DaskSettings, names: Names) -> dict:
    """The scheduler's own PriorityClass, with `PreemptLowerPriority`.

    The scheduler is one pod holding every result; Pending, the whole service is down. Preempting is the
    right trade: it can only displace lower-priority pods where it may run (on EKS the system pool, whose
    add-ons carry system priorities and are never displaced), at most one pod's worth (one replica,
    Recreate), and a displaced worker costs one worker's data, not the cluster's. The scheduler account
    cannot create pods (admission policy), so the class cannot be borrowed through it.
    """
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {
            "name": priority_class_name(names),
            "labels": kd.labels(names, "scheduler", settings.dask_version),
        },
        "value": SCHEDULER_PRIORITY,
        "globalDefault": False,
        "preemptionPolicy": "PreemptLowerPriority",
        "description": f"Dask scheduler of namespace {names.namespace}: scheduled before its workers",
    }


def default_service_account(settings: DaskSettings, names: Names) -> dict:
    """The namespace's `default` ServiceAccount without a token: a pod that names no account gets none.

    The controller-manager creates it with the namespace; the program must take it over (adopt or patch),
    not create a second one.
    """
    return rbac.service_account("default", names, "namespace", settings.dask_version, automount=False)
