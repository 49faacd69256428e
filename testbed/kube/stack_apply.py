"""Take the Kubernetes objects the Pulumi program registers for a stack (recorded under mocks by
testbed/infra/harness.py — what `pulumi up` would send) and apply them to the real control plane.

Why: schema tests prove the objects are well-formed; only a real apiserver proves they are accepted
together, that the ServiceAccount and Role grant exactly what the preload needs, and that the scheduler
pod actually starts with the preload shipped in the ConfigMap.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from testbed.kube.nodes import WORKER_TAINT, NodeSpec
from testbed.kube.rest import Rest

# The program's names of the scheduler's and the workers' Deployments (and ServiceAccounts).
SCHEDULER, WORKER = "dask-scheduler", "dask-worker"

# Resource types the program registers that are not plain objects for this apiserver, and why.
_VAP_WHY = (
    "admissionregistration.k8s.io/v1 admission policies need Kubernetes >= 1.30 and this control plane is"
    " 1.20; their CEL is evaluated by cel-python in tests/infra/k8s/test_fences.py instead"
)
SKIPPED_TYPES = {
    "kubernetes:helm.sh/v3:Release": "a Helm release (cluster-autoscaler) is a chart install, not an object;"
    " cluster-autoscaler needs AWS and is out of scope for the control plane",
    "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy": _VAP_WHY,
    "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding": _VAP_WHY,
}
# APIs missing in 1.20 and the nearest served version (same schema for the fields we use).
DOWNGRADES = {
    ("policy/v1", "PodDisruptionBudget"): "policy/v1beta1",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "autoscaling/v2beta2",
    ("discovery.k8s.io/v1", "EndpointSlice"): "discovery.k8s.io/v1beta1",
    ("batch/v1", "CronJob"): "batch/v1beta1",
}
PLURALS = {
    "Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "ConfigMap": "configmaps",
    "Secret": "secrets", "Service": "services", "Deployment": "deployments", "Role": "roles",
    "RoleBinding": "rolebindings", "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
    "PodDisruptionBudget": "poddisruptionbudgets", "NetworkPolicy": "networkpolicies",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers", "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets", "Job": "jobs", "CronJob": "cronjobs", "PriorityClass": "priorityclasses",
    "ResourceQuota": "resourcequotas", "LimitRange": "limitranges",
    "StorageClass": "storageclasses", "PersistentVolumeClaim": "persistentvolumeclaims",
    "PersistentVolume": "persistentvolumes",
}  # fmt: skip
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "StorageClass",
    "PersistentVolume",
}


def integral(value: Any) -> Any:
    """Pulumi's mock monitor records every number as a float; the apiserver wants int32 for 8786.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


def object_path(obj: dict[str, Any]) -> str:
    """Collection URL for an object (`/api/v1/namespaces/ns/configmaps`, `/apis/apps/v1/...`)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    plural = PLURALS.get(kind) or kind.lower() + "s"
    if kind in CLUSTER_SCOPED:
        return f"{base}/{plural}"
    return f"{base}/namespaces/{obj['metadata']['namespace']}/{plural}"


@dataclass
class StackObjects:
    """What a stack registers, ready to apply: objects in registration order, and what was not applied."""

    stack: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    # Patches of objects Kubernetes makes itself (the namespace's `default` ServiceAccount), applied last.
    patches: list[dict[str, Any]] = field(default_factory=list)
    converted: list[tuple[str, str]] = field(default_factory=list)
    graph: Any = field(default=None, repr=False)  # the whole recorded Graph (AWS resources too)

    def find(self, kind: str, name: str) -> dict[str, Any]:
        for o in self.objects:
            if o["kind"] == kind and o["metadata"]["name"] == name:
                return o
        raise KeyError(f"{self.stack} registers no {kind} {name}")

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    @property
    def namespace(self) -> str:
        (ns,) = self.of_kind("Namespace")
        return str(ns["metadata"]["name"])


def record_stack(stack: str, overrides: dict[str, str] | None = None) -> StackObjects:
    """Run the program for `stack` (stack config `overrides`, values as JSON/strings like in the stack
    file) under the infra harness's mocks and collect its Kubernetes objects."""
    import pulumi

    from testbed.infra.harness import run_stack

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        graph = run_stack(stack, overrides=overrides)
    finally:
        pulumi.runtime.set_all_config({})
        pulumi.runtime.reset_options()
        asyncio.set_event_loop(None)
        loop.close()
    out = StackObjects(stack, graph=graph)
    for node in graph.nodes:
        if not node.type.startswith("kubernetes:") or not node.custom:
            continue
        if node.type in SKIPPED_TYPES:
            out.skipped.append((f"{node.type} {node.name}", SKIPPED_TYPES[node.type]))
            continue
        if node.type.startswith("pulumi:providers:"):
            continue
        obj = integral(dict(node.inputs))
        if "apiVersion" not in obj or "kind" not in obj:
            out.skipped.append((f"{node.type} {node.name}", "no apiVersion/kind in the recorded inputs"))
            continue
        if node.type.endswith("Patch"):
            out.patches.append(obj)
            continue
        key = (obj["apiVersion"], obj["kind"])
        if key in DOWNGRADES:
            what = f"{obj['kind']} {obj['metadata'].get('name')}"
            out.converted.append((what, f"{key[0]} is not served by 1.20: applied as {DOWNGRADES[key]}"))
            obj["apiVersion"] = DOWNGRADES[key]
        out.objects.append(obj)
    return out


def nodes_for(objs: StackObjects) -> list[NodeSpec]:
    """One node per Deployment placement (nodeSelector, required node affinity, the worker taint if
    tolerated), big enough for any pod of the stack."""
    nodes = []
    for i, dep in enumerate(objs.of_kind("Deployment")):
        spec = dep["spec"]["template"]["spec"]
        labels = dict(spec.get("nodeSelector") or {})
        required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ) or {}
        for expr in (required.get("nodeSelectorTerms") or [{}])[0].get("matchExpressions") or []:
            if expr["operator"] == "In":
                labels[expr["key"]] = expr["values"][0]  # the first pool the pod accepts
            elif expr["operator"] == "Exists":
                labels[expr["key"]] = "true"
        tolerated = any(
            t.get("key") == WORKER_TAINT["key"] or (t.get("operator") == "Exists" and not t.get("key"))
            for t in spec.get("tolerations") or []
        )
        nodes.append(
            NodeSpec(
                f"{objs.stack}-{dep['metadata']['name']}-{i}",
                cpu="64",
                memory="256Gi",
                labels=labels,
                taints=[dict(WORKER_TAINT)] if tolerated else [],
            )
        )
    return nodes


def selected_pods(admin: Rest, ns: str, selector: dict[str, Any]) -> set[str]:
    """The pods the API server itself selects with a NetworkPolicy selector (matchLabels)."""
    labels = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
    return {p["metadata"]["name"] for p in admin.items(f"/api/v1/namespaces/{ns}/pods", labelSelector=labels)}


def post(rest: Rest, obj: dict[str, Any], path: str | None = None) -> None:
    """Create one object as `pulumi up` would, and wait where a real controller would have retried."""
    from testbed.kube.control_plane import wait_for
    from testbed.kube.rest import ApiError

    collection = path or object_path(obj)
    try:
        rest.post(collection, obj)
    except ApiError as err:
        # A cluster-scoped object (the scheduler's PriorityClass) outlives the namespace an earlier test
        # deleted: bring it to the desired state, as `pulumi up` would for an object it owns.
        if err.status != 409 or obj.get("kind") not in CLUSTER_SCOPED or obj.get("kind") == "Namespace":
            raise
        rest.patch(f"{collection}/{obj['metadata']['name']}", obj)
    if obj.get("kind") == "ResourceQuota":
        # Until the quota controller has computed usage, admission refuses every pod of the namespace
        # ("status unknown for quota"); a ReplicaSet retries, a bare Pod would not.
        name = f"{collection}/{obj['metadata']['name']}"
        wait_for(lambda: rest.get(name).get("status", {}).get("hard"), message=f"{name} computed")


def apply(rest: Rest, objects: list[dict[str, Any]], patches: list[dict[str, Any]] = ()) -> None:
    """Create every object (Namespaces first, then in registration order), as `pulumi up` would, then
    merge the patches into the objects they name once Kubernetes has made them."""
    from testbed.kube.control_plane import wait_for

    ordered = sorted(objects, key=lambda o: o["kind"] != "Namespace")  # stable: registration order kept
    for obj in ordered:
        post(rest, obj)
    for obj in patches:
        path = f"{object_path(obj)}/{obj['metadata']['name']}"
        wait_for(lambda p=path: rest.get_or_none(p), message=f"{path} made by Kubernetes")
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        rest.patch(path, body)
