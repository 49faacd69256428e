"""Turn a manifest dict (from the pure builders) into the matching typed pulumi-kubernetes resource.

Typed resources rather than `yaml.ConfigGroup`: each object is its own resource in the graph, with
its own options (provider, ignore_changes, depends_on), visible to mocks and policies.
"""

from __future__ import annotations

import re

import pulumi
import pulumi_kubernetes as k8s

_CLASSES: dict[tuple[str, str], type[pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("storage.k8s.io/v1", "StorageClass"): k8s.storage.v1.StorageClass,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("scheduling.k8s.io/v1", "PriorityClass"): k8s.scheduling.v1.PriorityClass,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): (
        k8s.admissionregistration.v1.ValidatingAdmissionPolicy
    ),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"): (
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding
    ),
}
# Objects that already exist when the program runs (made by Kubernetes itself): patched, not created.
_PATCH_CLASSES: dict[tuple[str, str], type[pulumi.CustomResource]] = {
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccountPatch,
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def create(resource_name: str, manifest: dict, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Register `manifest`; its top-level fields become the resource's arguments (nested stay wire form)."""
    cls = _CLASSES[(manifest["apiVersion"], manifest["kind"])]
    args = {_snake(k): v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    return cls(resource_name, **args, opts=opts)


def patch(resource_name: str, manifest: dict, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Server-side-apply `manifest`'s fields onto an object Kubernetes made itself (e.g. the namespace's
    `default` ServiceAccount); the fields go back to the server's values when the stack is destroyed."""
    cls = _PATCH_CLASSES[(manifest["apiVersion"], manifest["kind"])]
    args = {_snake(k): v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    return cls(resource_name, **args, opts=opts)
