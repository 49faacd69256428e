"""Pure builders for the Dask namespace's fences (issue 12 §2 and §3), as plain dicts.

This module owns: the NetworkPolicies of the Dask namespace and the vpc-cni setting that makes EKS enforce
them; the ValidatingAdmissionPolicy (+ binding) that narrows what the scheduler's service account may do
to scaling; the namespace ResourceQuota; the Pod Security Admission labels and a `restricted` checker; the
scheduler's PriorityClass; the namespace's `default` ServiceAccount. Names, labels and ports come from
`dask_objects` (one place for each fact); `DaskCluster` wires each builder with one call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra.config.settings import DaskSettings
from infra.facts.quantity import format_cpu_millicores, format_memory_mib
from infra.k8s import dask_objects as kd
from infra.k8s.dask_objects import Names

# The preload's only pod write (dask_adaptive/backends/kubernetes/backend.py `_remove` step (a), through
# api.py `annotate_pod`): a merge-patch of this one annotation. Equal to ranking.DELETION_COST (a test
# pins it); not imported, because ranking.py pulls in tornado and infra must not need it.
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

SelectorLabels = Mapping[str, str]


# ---------------------------------------------------------------- shared selectors


def stack_pod_labels(names: Names) -> dict[str, str]:
    """The labels every Dask pod of this stack (scheduler and workers) carries, and nothing else does.

    Derived as the common part of the two selectors, so it cannot drift from dask_objects.
    """
    scheduler = kd.selector_labels(names, "scheduler")
    worker = kd.selector_labels(names, "worker")
    return {k: v for k, v in scheduler.items() if worker.get(k) == v}


def _meta(name: str, names: Names, component: str, version: str) -> dict:
    return {"name": name, "namespace": names.namespace, "labels": kd.labels(names, component, version)}


# ---------------------------------------------------------------- NetworkPolicy (issue 12 §2)


def _policy(name: str, names: Names, version: str, pod_selector: dict, ingress: list[dict]) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, names, "network-policy", version),
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
        # Behind the NLB of `dashboard_service` the source address is the client's only if the NLB
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


def vpc_cni_configuration() -> str:
    """`configuration_values` of the EKS `vpc-cni` addon: turns on its NetworkPolicy enforcement.

    Without it EKS accepts NetworkPolicy objects and enforces none. The key is `enableNetworkPolicy` with
    the STRING "true" (the addon schema's booleans are strings), available from addon v1.14.0-eksbuild.3
    and unchanged since (EKS user guide, "Restrict Pod network traffic with Kubernetes network policies").
    """
    return json.dumps({"enableNetworkPolicy": "true"}, sort_keys=True)


# ---------------------------------------------------------------- admission policy (issue 12 §3)
#
# The expressions use only the CEL core and has(): no Kubernetes CEL libraries (no string or list
# extensions), so the independent implementation the tests use (cel-python) evaluates them exactly.
# They never compare an object with null (cel-python has no heterogeneous equality): `request.operation`
# says when object/oldObject exist. Every optional field is guarded with has(), since an absent field is
# an evaluation error, and an error fails closed here (failurePolicy Fail).


def _cel_string(value: str) -> str:
    """A CEL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def scheduler_username(names: Names) -> str:
    """How the apiserver names requests made with the scheduler pod's service-account token."""
    return f"system:serviceaccount:{names.namespace}:{names.scheduler}"


def admission_policy_name(names: Names) -> str:
    """Cluster-scoped, so per stack (the namespace is per stack)."""
    return f"{names.namespace}-{names.scheduler}-scaling-only"


def _labels_match(var: str, selector: Mapping[str, str]) -> str:
    terms = [f"has({var}.metadata.labels)"]
    for key, value in selector.items():
        k = _cel_string(key)
        terms.append(f"{k} in {var}.metadata.labels && {var}.metadata.labels[{k}] == {_cel_string(value)}")
    return " && ".join(terms)


def _same_field(field: str) -> str:
    """object.metadata.<field> and oldObject.metadata.<field> both absent, or both present and equal."""
    new, old = f"object.metadata.{field}", f"oldObject.metadata.{field}"
    return f"has({new}) == has({old}) && (!has({new}) || {new} == {old})"


def _same_annotations_except(key: str) -> str:
    k = _cel_string(key)
    new, old = "object.metadata.annotations", "oldObject.metadata.annotations"
    kept = f"(!has({new}) || {new}.all(a, a == {k} || (has({old}) && a in {old} && {old}[a] == {new}[a])))"
    gone = f"(!has({old}) || {old}.all(a, a == {k} || (has({new}) && a in {new})))"
    return f"{kept} && {gone}"


def admission_variables(names: Names) -> list[dict[str, str]]:
    """Named sub-expressions; each is total (never an error) for every request the policy matches."""
    ns = _cel_string(names.namespace)
    return [
        {"name": "subresource", "expression": "has(request.subResource) ? request.subResource : ''"},
        {"name": "inNamespace", "expression": f"has(request.namespace) && request.namespace == {ns}"},
        {
            # object/oldObject exist for UPDATE; only oldObject for DELETE
            "name": "oldIsWorker",
            "expression": "(request.operation == 'UPDATE' || request.operation == 'DELETE') && "
            + _labels_match("oldObject", kd.selector_labels(names, "worker")),
        },
        {
            "name": "onlyDeletionCostChanged",
            "expression": "request.operation == 'UPDATE' && object.spec == oldObject.spec && "
            + " && ".join(_same_field(f) for f in ("labels", "ownerReferences", "finalizers"))
            + " && "
            + _same_annotations_except(DELETION_COST),
        },
    ]


def admission_validations(settings: DaskSettings, names: Names) -> list[dict[str, str]]:
    """What the scheduler's service account may do; anything else it tries is denied.

    RBAC (`dask_objects.role_rules`) already limits it to get/list/watch/patch/delete pods and
    get/patch/update the worker Deployment's /scale; this is the second fence, for what RBAC cannot
    express: which pods, which fields, how many replicas. The preload's writes, exactly:
    - PATCH pod: merge-patch of `metadata.annotations[controller.kubernetes.io/pod-deletion-cost]` on
      the worker pods it retires (backend.py `_remove` (a) -> api.py `annotate_pod`). Allowed: that
      annotation added, changed or removed, on this stack's worker pods; spec, labels, other annotations,
      ownerReferences and finalizers unchanged (an image swap, relabelling a pod out of its ReplicaSet,
      orphaning it or a new toleration are all refused). Server-managed metadata (managedFields,
      resourceVersion, generation) is not compared. The value is not restricted: it only orders which
      worker the ReplicaSet removes first, among pods this account may delete outright anyway.
    - DELETE pod: retired worker pods (backend.py `_remove` (b) and `_verify` (d)): this stack's worker
      pods in this namespace only, judged by oldObject's labels.
    - UPDATE deployments/scale (a PATCH arrives as UPDATE): the worker Deployment only, with
      spec.replicas <= max_workers (backend.py `scale_up` and `_remove` (c) -> api.py `patch_scale`).
    No pod CREATE and no pod subresource (exec, attach, portforward, ephemeralcontainers, eviction,
    status, resize, binding); no write to any Deployment itself.
    """
    worker = _cel_string(names.worker)
    is_pods = "request.resource.resource == 'pods'"
    is_deployments = "request.resource.resource == 'deployments'"
    is_scale = f"{is_deployments} && variables.subresource == 'scale' && request.operation == 'UPDATE'"
    return [
        {
            "expression": f"!({is_pods}) || (variables.subresource == '' && "
            "(request.operation == 'UPDATE' || request.operation == 'DELETE'))",
            "message": "the Dask scheduler may only patch or delete pods: no create, no pod subresource",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({is_pods}) || (variables.inNamespace && variables.oldIsWorker)",
            "message": f"the Dask scheduler may only touch the worker pods of namespace {names.namespace}",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({is_pods}) || request.operation != 'UPDATE' "
            "|| variables.onlyDeletionCostChanged",
            "message": f"the Dask scheduler may change nothing on a pod but the {DELETION_COST} annotation",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({is_deployments}) || ({is_scale} && variables.inNamespace "
            f"&& has(request.name) && request.name == {worker})",
            "message": f"the Dask scheduler may only scale Deployment {names.namespace}/{names.worker}",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({is_scale}) || !has(object.spec) || !has(object.spec.replicas) "
            f"|| object.spec.replicas <= {int(settings.max_workers)}",
            "message": f"the Dask scheduler may not ask for more than {settings.max_workers} workers",
            "reason": "Forbidden",
        },
    ]


def admission_policy(settings: DaskSettings, names: Names) -> dict:
    """ValidatingAdmissionPolicy (v1, GA since 1.30) for requests made by the scheduler's account only.

    Matches every operation on pods and deployments (with their subresources), then narrows to the
    scheduler's username by `matchConditions`, so other users never reach the validations. Fails closed.
    """
    username = _cel_string(scheduler_username(names))
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {
            "name": admission_policy_name(names),
            "labels": kd.labels(names, "admission-policy", settings.dask_version),
        },
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["*"],
                        "operations": ["*"],
                        "resources": ["pods", "pods/*"],
                    },
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["*"],
                        "operations": ["*"],
                        "resources": ["deployments", "deployments/*"],
                    },
                ]
            },
            "matchConditions": [
                {
                    "name": "scheduler-service-account",
                    "expression": "has(request.userInfo.username) && "
                    f"request.userInfo.username == {username}",
                }
            ],
            "variables": admission_variables(names),
            "validations": admission_validations(settings, names),
        },
    }


def admission_policy_binding(settings: DaskSettings, names: Names) -> dict:
    """Binds the policy cluster-wide with `Deny` (the matchCondition already scopes it to one account)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {
            "name": admission_policy_name(names),
            "labels": kd.labels(names, "admission-policy", settings.dask_version),
        },
        "spec": {"policyName": admission_policy_name(names), "validationActions": ["Deny"]},
    }


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
    """max_workers workers + the scheduler + the margin above, at their configured sizes."""
    workers = settings.max_workers + EXTRA_WORKERS
    schedulers = 1 + EXTRA_SCHEDULERS
    return QuotaBudget(
        pods=workers + schedulers,
        cpu_millicores=workers * settings.worker.cpu_millicores
        + schedulers * settings.scheduler_cpu_millicores,
        memory_mib=workers * settings.worker.memory_mib + schedulers * settings.scheduler_memory_mib,
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
        "metadata": _meta("dask-budget", names, "quota", settings.dask_version),
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


# The Pod Security Standards `restricted` profile (which includes `baseline`), as of Kubernetes 1.33.
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SECCOMP_ALLOWED = frozenset({"RuntimeDefault", "Localhost"})


def _containers(spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [
        (f"{kind}[{c.get('name', i)}]", c)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for i, c in enumerate(spec.get(kind) or [])
    ]


def restricted_violations(pod_spec: Mapping[str, Any]) -> list[str]:
    """Every way `pod_spec` falls short of Pod Security `restricted`; empty when it meets it.

    Used by the tests on the program's own pod templates, so a missing field is found before a cluster
    with `enforce: restricted` refuses the pods.
    """
    problems: list[str] = []
    pod_sc = pod_spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            problems.append(f"pod: {flag} is true")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')}: type {sorted(kinds - RESTRICTED_VOLUME_TYPES)}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"pod: sysctl {sysctl.get('name')} is not in the safe set")
    problems += [f"pod: {p}" for p in _context_problems(pod_sc)]
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod: runAsUser is 0")
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_ALLOWED:
        problems.append(f"pod: seccompProfile {pod_seccomp}")
    containers = _containers(pod_spec)
    for where, c in containers:
        sc = c.get("securityContext") or {}
        problems += [f"{where}: {p}" for p in _context_problems(sc)]
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            problems.append(f"{where}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount {sc.get('procMount')}")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            problems.append(f"{where}: capabilities.drop lacks ALL")
        added = set(caps.get("add") or []) - ADDABLE_CAPABILITIES
        if added:
            problems.append(f"{where}: capabilities.add {sorted(added)}")
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            problems.append(f"{where}: runAsNonRoot is not true (neither here nor on the pod)")
        if sc.get("runAsUser") == 0:
            problems.append(f"{where}: runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in SECCOMP_ALLOWED:
            problems.append(f"{where}: seccompProfile {seccomp}")
        if seccomp is None and pod_seccomp not in SECCOMP_ALLOWED:
            problems.append(
                f"{where}: no seccompProfile RuntimeDefault/Localhost (neither here nor on the pod)"
            )
    if not containers:
        problems.append("pod: no containers")
    return problems


def _context_problems(sc: Mapping[str, Any]) -> list[str]:
    """Checks shared by pod- and container-level securityContext (baseline: Windows, SELinux, AppArmor)."""
    problems = []
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("windowsOptions.hostProcess is true")
    selinux = sc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        problems.append(f"seLinuxOptions {dict(selinux)}")
    if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
        problems.append("appArmorProfile Unconfined")
    return problems


# ---------------------------------------------------------------- PriorityClass, default ServiceAccount

# Far above the default 0 of ordinary pods (and of the workers), far below the system classes
# (2000000000+) and the 1000000000 ceiling for user-defined classes.
SCHEDULER_PRIORITY = 100_000


def priority_class_name(names: Names) -> str:
    """Cluster-scoped, so per stack; the scheduler Deployment's `priorityClassName`."""
    return f"{names.namespace}-{names.scheduler}"


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
    return kd.service_account("default", names, "namespace", settings.dask_version, automount=False)
