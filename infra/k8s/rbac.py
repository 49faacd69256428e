"""The scheduler's Kubernetes identity (plain dicts): its ServiceAccounts, and the Role that grants exactly
what the preload needs to scale one worker Deployment (the admission policy in `admission.py` narrows it
further)."""

from __future__ import annotations

from collections.abc import Mapping

from infra.k8s.dask_objects import Names, object_meta


def role_rules(worker_deployment: str) -> list[dict]:
    """Exactly what the scheduler preload needs; `resourceNames` pins the Deployment verbs to one name.

    Pod verbs cannot be pinned by name (list/watch, and pods get generated names): they stay namespaced.
    """
    return [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale"],
            "resourceNames": [worker_deployment],
            "verbs": ["get", "patch", "update"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": [worker_deployment],
            "verbs": ["get", "watch"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch", "delete"]},
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]


def service_account(
    name: str,
    names: Names,
    component: str,
    version: str,
    automount: bool,
    annotations: Mapping[str, str] | None = None,
) -> dict:
    metadata = object_meta(name, names, component, version)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata,
        "automountServiceAccountToken": automount,
    }


def role(names: Names, version: str) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": object_meta(names.role, names, "scheduler", version),
        "rules": role_rules(names.worker),
    }


def role_binding(names: Names, version: str) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": object_meta(names.role, names, "scheduler", version),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.role},
        "subjects": [{"kind": "ServiceAccount", "name": names.scheduler, "namespace": names.namespace}],
    }
