"""The Dask namespace's fences (k8s/network_policies.py, admission.py, guards.py; issue 12), offline.

- every manifest against the Kubernetes 1.33 OpenAPI schema (admissionregistration v1 VAP needs 1.30+);
- NetworkPolicy selectors evaluated against the labels of the program's own pod templates;
- the admission policy's CEL run by an independent implementation (cel-python) on admission requests
  shaped as the apiserver sends them, with matchConstraints/matchConditions/variables applied in the
  apiserver's order;
- quota arithmetic table-tested; Pod Security `restricted` checked on the program's pod templates.
"""

from __future__ import annotations

import copy
import json

import pytest

from dask_adaptive.backends.kubernetes import ranking
from infra.aws import cluster
from infra.config.settings import DaskSettings
from infra.facts.quantity import parse_cpu_millicores, parse_memory_bytes
from infra.k8s import admission, guards, network_policies, rbac, services
from infra.k8s import dask_objects as kd
from testbed.infra import builders
from testbed.infra.admission_review import (
    HASH,
    NAMES,
    NS,
    SCHEDULER_USER,
    SETTINGS,
    WORKER,
    patched,
    pod,
    request,
    review,
    scale,
)
from testbed.infra.builders import MAX_WORKERS, aws_settings, local_settings, names_of, templates
from tests.infra.pod_security import restricted_violations
from tests.infra.schema import schema_errors

SCHEMA_VERSION = "1.33"
CLIENT_NAMESPACES = ({"kubernetes.io/metadata.name": "jupyter"},)
CLIENT_PODS = ({"app.kubernetes.io/name": "notebook"},)


# ---------------------------------------------------------------- the manifests


def all_manifests(settings: DaskSettings) -> list[dict]:
    names = names_of(settings)
    return [
        *network_policies.network_policies(settings, names, CLIENT_NAMESPACES, CLIENT_PODS),
        admission.admission_policy(settings, names),
        admission.admission_policy_binding(settings, names),
        guards.resource_quota(settings, names),
        guards.namespace(settings, names, "1.33" if settings.target == "aws" else None),
        guards.scheduler_priority_class(settings, names),
        guards.default_service_account(settings, names),
    ]


@pytest.mark.parametrize("settings", [aws_settings(), local_settings()], ids=["aws", "local"])
def test_every_manifest_is_valid_for_kubernetes_1_33(settings):
    manifests = all_manifests(settings)
    assert {m["kind"] for m in manifests} >= {
        "NetworkPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ResourceQuota",
        "Namespace",
        "PriorityClass",
        "ServiceAccount",
    }
    assert [e for m in manifests for e in schema_errors(m, SCHEMA_VERSION)] == []


def test_the_schema_check_does_reject_a_broken_policy():
    policy = admission.admission_policy(aws_settings(), names_of(aws_settings()))
    policy["spec"]["validationActions"] = ["Deny"]  # belongs on the binding, not the policy
    assert schema_errors(policy, SCHEMA_VERSION)
    netpol = network_policies.network_policies(aws_settings(), names_of(aws_settings()))[0]
    netpol["spec"]["policyTypes"] = "Ingress"
    assert schema_errors(netpol, SCHEMA_VERSION)


# ---------------------------------------------------------------- NetworkPolicy


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """Label-selector semantics for the matchLabels-only selectors these policies use."""
    assert set(selector) <= {"matchLabels"}, selector  # no matchExpressions to evaluate
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def population(settings: DaskSettings) -> dict[str, dict[str, str]]:
    """Pod labels in the Dask namespace: the program's two templates plus pods it must not select."""
    pods = {name: t["metadata"]["labels"] for name, t in templates(settings).items()}
    other_stack = {**pods["worker"], "app.kubernetes.io/instance": "adask-other"}
    return {
        **pods,
        "other-stack-worker": other_stack,
        "notebook": {"app.kubernetes.io/name": "notebook"},
        "unlabelled": {},
    }


def selected(selector: dict, settings: DaskSettings) -> set[str]:
    return {name for name, labels in population(settings).items() if selects(selector, labels)}


def by_name(policies: list[dict]) -> dict[str, dict]:
    return {p["metadata"]["name"]: p["spec"] for p in policies}


def test_policies_select_exactly_the_intended_pods_of_the_program():
    settings = aws_settings()
    names = names_of(settings)
    specs = by_name(network_policies.network_policies(settings, names, CLIENT_NAMESPACES, CLIENT_PODS))
    every = set(population(settings))

    deny = specs["dask-default-deny"]
    assert selected(deny["podSelector"], settings) == every
    assert deny["policyTypes"] == ["Ingress", "Egress"]  # nothing in, nothing out, unless allowed below
    assert deny["ingress"] == [] and deny["egress"] == []

    sched = specs["dask-scheduler-from-workers"]
    assert selected(sched["podSelector"], settings) == {"scheduler"}
    [rule] = sched["ingress"]
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}  # no namespaceSelector: the Dask namespace only
    assert selected(peer["podSelector"], settings) == {"worker"}
    assert rule["ports"] == [{"protocol": "TCP", "port": kd.SCHEDULER_PORT}]

    workers = specs["dask-workers-from-dask"]
    assert selected(workers["podSelector"], settings) == {"worker"}
    [rule] = workers["ingress"]
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}
    assert selected(peer["podSelector"], settings) == {"scheduler", "worker"}
    assert "ports" not in rule  # random worker/nanny ports: see the next test

    clients = specs["dask-scheduler-from-clients"]
    assert selected(clients["podSelector"], settings) == {"scheduler"}
    [rule] = clients["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": CLIENT_NAMESPACES[0]}},
        {"podSelector": {"matchLabels": CLIENT_PODS[0]}},
    ]
    assert selected(rule["from"][1]["podSelector"], settings) == {"notebook"}
    assert rule["ports"] == [{"protocol": "TCP", "port": kd.SCHEDULER_PORT}]

    # Egress: each policy governs exactly its component (k8s/test_network_policies.py evaluates them).
    for name, component in {
        "dask-scheduler-egress": "scheduler",
        "dask-workers-egress": "worker",
        "dask-client-0-egress": "notebook",
    }.items():
        assert specs[name]["policyTypes"] == ["Egress"] and "ingress" not in specs[name]
        assert selected(specs[name]["podSelector"], settings) == {component}, name
    egress_peers = [
        peer
        for name in ("dask-scheduler-egress", "dask-workers-egress", "dask-client-0-egress")
        for rule in specs[name]["egress"]
        for peer in rule["to"]
        if set(peer) == {"podSelector"}
    ]
    assert {frozenset(selected(p["podSelector"], settings)) for p in egress_peers} == {
        frozenset({"scheduler"}),
        frozenset({"worker"}),
    }

    dashboard = specs["dask-dashboard-from-cidrs"]
    assert selected(dashboard["podSelector"], settings) == {"scheduler"}
    assert dashboard["ingress"] == [
        {
            "from": [{"ipBlock": {"cidr": "10.1.0.0/16"}}],
            "ports": [{"protocol": "TCP", "port": kd.DASHBOARD_PORT}],
        }
    ]


def test_worker_and_nanny_ports_are_random_so_the_worker_rule_has_no_ports():
    """If someone pins them, the worker policy should list them: this test then asks for it."""
    command = kd.worker_command(local_settings(), names_of(local_settings()))
    assert "--worker-port" not in command and "--nanny-port" not in command


def test_policy_ports_are_the_container_ports_of_the_program():
    """The VPC CNI requires service port == container port; the policies use the same numbers."""
    ports = {
        p["name"]: p["containerPort"]
        for p in templates(aws_settings())["scheduler"]["spec"]["containers"][0]["ports"]
    }
    assert ports == {"tcp-comm": kd.SCHEDULER_PORT, "http-dashboard": kd.DASHBOARD_PORT}
    service = services.scheduler_service(names_of(aws_settings()), "x")
    assert {p["port"] for p in service["spec"]["ports"]} == set(ports.values())


def test_client_and_dashboard_policies_only_exist_when_configured():
    settings = local_settings()
    assert settings.dashboard_cidrs == ()
    plain = by_name(network_policies.network_policies(settings, names_of(settings)))
    assert set(plain) == {
        "dask-default-deny",
        "dask-scheduler-from-workers",
        "dask-workers-from-dask",
        "dask-scheduler-egress",
        "dask-workers-egress",
    }
    two = aws_settings(cidrs=("10.1.0.0/16", "192.168.7.0/24"))
    dash = by_name(network_policies.network_policies(two, names_of(two)))["dask-dashboard-from-cidrs"]
    assert [p["ipBlock"]["cidr"] for p in dash["ingress"][0]["from"]] == ["10.1.0.0/16", "192.168.7.0/24"]


def test_stack_pod_labels_exclude_the_component():
    names = kd.Names("adask-dev")
    assert network_policies.stack_pod_labels(names) == {
        "app.kubernetes.io/name": "dask",
        "app.kubernetes.io/instance": "adask-dev",
    }


def test_vpc_cni_configuration_enables_network_policy_as_a_string():
    assert json.loads(cluster.vpc_cni_configuration()) == {"enableNetworkPolicy": "true"}


# ---------------------------------------------------------------- admission policy (admission_review.py)


def annotate(key: str, value: str | None):
    def change(p: dict) -> None:
        annotations = p["metadata"].setdefault("annotations", {})
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value

    return change


def set_image(p: dict) -> None:
    p["spec"]["containers"][0]["image"] = "attacker.example/miner:latest"


def relabel(p: dict) -> None:
    p["metadata"]["labels"]["app.kubernetes.io/component"] = "escaped"


def orphan(p: dict) -> None:
    del p["metadata"]["ownerReferences"]


def tolerate_all(p: dict) -> None:
    p["spec"]["tolerations"].append({"operator": "Exists"})


def add_debug_container(p: dict) -> None:
    p["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox", "stdin": True, "tty": True}]


EXEC_OPTIONS = {
    "kind": "PodExecOptions",
    "apiVersion": "v1",
    "stdin": True,
    "stdout": True,
    "tty": True,
    "container": "worker",
    "command": ["sh"],
}


def cost_and_more(p: dict) -> None:
    annotate(admission.DELETION_COST, ranking.LOWEST_COST)(p)
    annotate(kd.SAFE_TO_EVICT, "true")(p)


COSTED_WORKER = patched(WORKER, annotate(admission.DELETION_COST, "0"))
SCHEDULER_POD = pod("scheduler", f"{NAMES.scheduler}-{HASH}-q7m4d")
FOREIGN_WORKER = pod("worker", f"{NAMES.worker}-{HASH}-zz9", namespace="adask-other")
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": NAMES.worker, "namespace": NS},
}


def worker_patch(old: dict, change, **kw) -> tuple:
    return request("UPDATE", "pods", old["metadata"]["name"], **kw), patched(old, change), old


def pod_delete(old: dict, **kw) -> tuple:
    return request("DELETE", "pods", old["metadata"]["name"], **kw), None, old


def scale_update(name: str, replicas: int | None, **kw) -> tuple:
    req = request("UPDATE", "deployments", name, group="apps", kind="Scale", sub="scale", **kw)
    return req, scale(name, replicas), scale(name, 2)


# (id, (request, object, oldObject), expected verdict, message fragment of the failing validation)
CASES = [
    # --- allowed: exactly what the preload does
    (
        "add deletion cost",
        worker_patch(WORKER, annotate(admission.DELETION_COST, ranking.LOWEST_COST)),
        "allowed",
        "",
    ),
    (
        "change deletion cost",
        worker_patch(COSTED_WORKER, annotate(admission.DELETION_COST, ranking.LOWEST_COST)),
        "allowed",
        "",
    ),
    (
        "remove deletion cost",
        worker_patch(COSTED_WORKER, annotate(admission.DELETION_COST, None)),
        "allowed",
        "",
    ),
    ("delete a worker pod", pod_delete(WORKER), "allowed", ""),
    ("scale to the maximum", scale_update(NAMES.worker, MAX_WORKERS), "allowed", ""),
    ("scale to zero (replicas omitted)", scale_update(NAMES.worker, 0), "allowed", ""),
    # --- denied: what a stolen token would try
    ("image swap", worker_patch(WORKER, set_image), "denied", "change nothing on a pod"),
    ("label change", worker_patch(WORKER, relabel), "denied", "change nothing on a pod"),
    ("orphan a worker", worker_patch(WORKER, orphan), "denied", "change nothing on a pod"),
    ("add a toleration", worker_patch(WORKER, tolerate_all), "denied", "change nothing on a pod"),
    (
        "cost plus another annotation",
        worker_patch(WORKER, cost_and_more),
        "denied",
        "change nothing on a pod",
    ),
    (
        "deletion cost on the scheduler pod",
        worker_patch(SCHEDULER_POD, annotate(admission.DELETION_COST, ranking.LOWEST_COST)),
        "denied",
        "only touch the worker pods",
    ),
    ("delete the scheduler pod", pod_delete(SCHEDULER_POD), "denied", "only touch the worker pods"),
    (
        "delete a worker pod of another namespace",
        pod_delete(FOREIGN_WORKER, namespace="adask-other"),
        "denied",
        "only touch the worker pods",
    ),
    ("scale to maximum + 1", scale_update(NAMES.worker, MAX_WORKERS + 1), "denied", "more than 5 workers"),
    ("scale the scheduler Deployment", scale_update(NAMES.scheduler, 1), "denied", "only scale Deployment"),
    (
        "scale a Deployment of another namespace",
        scale_update(NAMES.worker, 1, namespace="adask-other"),
        "denied",
        "only scale Deployment",
    ),
    (
        "update the worker Deployment itself",
        (
            request("UPDATE", "deployments", NAMES.worker, group="apps", kind="Deployment"),
            DEPLOYMENT,
            DEPLOYMENT,
        ),
        "denied",
        "only scale Deployment",
    ),
    ("create a pod", (request("CREATE", "pods", ""), WORKER, None), "denied", "only patch or delete pods"),
    (
        "add an ephemeral container",
        (
            request("UPDATE", "pods", WORKER["metadata"]["name"], sub="ephemeralcontainers"),
            patched(WORKER, add_debug_container),
            WORKER,
        ),
        "denied",
        "only patch or delete pods",
    ),
    (
        "exec into a worker",
        (request("CONNECT", "pods", WORKER["metadata"]["name"], sub="exec"), EXEC_OPTIONS, None),
        "denied",
        "only patch or delete pods",
    ),
    # --- not this policy's business
    (
        "another user swaps an image",
        worker_patch(WORKER, set_image, username="kubernetes-admin"),
        "unmatched",
        "",
    ),
    (
        "the worker service account deletes a pod",
        pod_delete(WORKER, username=f"system:serviceaccount:{NS}:{NAMES.worker}"),
        "unmatched",
        "",
    ),
]


@pytest.mark.parametrize(("case", "objects", "verdict", "why"), CASES, ids=[c[0] for c in CASES])
def test_admission_policy_cel(case, objects, verdict, why):
    policy = admission.admission_policy(SETTINGS, NAMES)
    decision = review(policy, *objects)
    assert decision.errors == [], decision.errors  # every expression is total: a denial is a real one
    assert decision.verdict == verdict, (case, decision)
    if verdict == "denied":
        assert any(why in message for message in decision.denied), decision.denied


def test_the_cel_cases_cover_the_brief():
    verdicts = [c[2] for c in CASES]
    assert verdicts.count("allowed") >= 6 and verdicts.count("denied") >= 12
    assert len(CASES) >= 12


def test_the_policy_follows_the_configured_maximum():
    policy = admission.admission_policy(aws_settings(max_workers=2), NAMES)
    assert review(policy, *scale_update(NAMES.worker, 2)).verdict == "allowed"
    assert review(policy, *scale_update(NAMES.worker, 3)).verdict == "denied"


def test_policy_is_scoped_to_the_scheduler_account_fails_closed_and_is_bound_with_deny():
    policy = admission.admission_policy(SETTINGS, NAMES)
    binding = admission.admission_policy_binding(SETTINGS, NAMES)
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert admission.scheduler_username(NAMES) == SCHEDULER_USER
    assert f"'{SCHEDULER_USER}'" in policy["spec"]["matchConditions"][0]["expression"]
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert NS in policy["metadata"]["name"]  # cluster-scoped: one per stack


def test_the_policy_agrees_with_the_rbac_and_the_preload():
    """What the policy allows is what the Role grants and the preload uses; nothing more."""
    assert admission.DELETION_COST == ranking.DELETION_COST
    rules = rbac.role_rules(NAMES.worker)
    pod_verbs = {v for r in rules if r["resources"] == ["pods"] for v in r["verbs"]}
    assert pod_verbs & {"create", "update", "patch", "delete"} == {"patch", "delete"}
    scale_rule = next(r for r in rules if r["resources"] == ["deployments/scale"])
    assert scale_rule["resourceNames"] == [NAMES.worker]
    writes = {
        (verb, res, sub, name) for verb, _, res, sub, name in ranking.required_permissions(NAMES.worker)
    }
    assert {w for w in writes if w[0] in ("patch", "delete", "update", "create") and w[1] != "events"} == {
        ("patch", "deployments", "scale", NAMES.worker),
        ("patch", "pods", "", ""),
        ("delete", "pods", "", ""),
    }


def test_cel_uses_only_the_core_and_has():
    """cel-python evaluates these exactly only if no Kubernetes CEL library function appears."""
    policy = admission.admission_policy(SETTINGS, NAMES)
    spec = policy["spec"]
    expressions = [c["expression"] for c in spec["matchConditions"]]
    expressions += [v["expression"] for v in spec["variables"]]
    expressions += [v["expression"] for v in spec["validations"]]
    extensions = (".startsWith(", ".endsWith(", ".matches(", ".split(", "url(", "quantity(", ".exists_one(")
    assert not [e for e in expressions for x in extensions if x in e]


# ---------------------------------------------------------------- ResourceQuota


@pytest.mark.parametrize(
    ("max_workers", "worker_cpu", "worker_mem", "sched_cpu", "sched_mem", "pods", "cpu", "mem"),
    [
        # (max + 1) workers and 2 schedulers
        (4, "1", "2Gi", "500m", "1Gi", 7, 5 * 1000 + 2 * 500, 5 * 2048 + 2 * 1024),
        (1, "1", "2Gi", "500m", "1Gi", 4, 2 * 1000 + 2 * 500, 2 * 2048 + 2 * 1024),
        (10, "3500m", "14Gi", "1", "2Gi", 13, 11 * 3500 + 2 * 1000, 11 * 14336 + 2 * 2048),
    ],
)
def test_quota_arithmetic(max_workers, worker_cpu, worker_mem, sched_cpu, sched_mem, pods, cpu, mem):
    raw = {
        "maxWorkers": max_workers,
        "workerCpu": worker_cpu,
        "workerMemory": worker_mem,
        "schedulerCpu": sched_cpu,
        "schedulerMemory": sched_mem,
    }
    settings = builders.dask(raw, target="local", namespace="adask-local")
    assert guards.quota_budget(settings) == guards.QuotaBudget(pods, cpu, mem)
    hard = guards.resource_quota(settings, names_of(settings))["spec"]["hard"]
    assert hard == {
        "pods": str(pods),
        "requests.cpu": f"{cpu}m",
        "requests.memory": f"{mem}Mi",
        "limits.cpu": f"{cpu}m",
        "limits.memory": f"{mem}Mi",
    }


@pytest.mark.parametrize("settings", [aws_settings(), local_settings()], ids=["aws", "local"])
def test_quota_fits_the_program_pods_exactly(settings):
    """Summed from the pod templates themselves: (max+1) workers and 2 schedulers fit, one more does not."""
    pods = templates(settings)

    def totals(component: str, kind: str) -> tuple[int, int]:
        res = pods[component]["spec"]["containers"][0]["resources"][kind]
        return parse_cpu_millicores(res["cpu"]), parse_memory_bytes(res["memory"]) // 2**20

    hard = guards.resource_quota(settings, names_of(settings))["spec"]["hard"]
    n_workers, n_schedulers = settings.max_workers + 1, 2
    assert int(hard["pods"]) == n_workers + n_schedulers
    for kind in ("requests", "limits"):
        w_cpu, w_mem = totals("worker", kind)
        s_cpu, s_mem = totals("scheduler", kind)
        assert parse_cpu_millicores(hard[f"{kind}.cpu"]) == n_workers * w_cpu + n_schedulers * s_cpu
        assert parse_memory_bytes(hard[f"{kind}.memory"]) // 2**20 == n_workers * w_mem + n_schedulers * s_mem


# ---------------------------------------------------------------- Pod Security Admission


@pytest.mark.parametrize(
    ("version", "pinned"), [("1.33", "v1.33"), ("1.35", "v1.35"), ("v1.34.2", "v1.34"), (None, "latest")]
)
def test_pod_security_labels(version, pinned):
    labels = guards.pod_security_labels(version)
    assert labels == {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": pinned,
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "latest",
    }


def test_pod_security_version_rejects_garbage():
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        guards.pod_security_version("one.thirty")


def test_namespace_keeps_the_program_labels_and_adds_pod_security():
    settings = aws_settings()
    ns = guards.namespace(settings, names_of(settings), "1.35")
    base = kd.namespace(names_of(settings), settings.dask_version)
    assert ns["metadata"]["labels"] == {**base["metadata"]["labels"], **guards.pod_security_labels("1.35")}


@pytest.mark.parametrize("settings", [aws_settings(), local_settings()], ids=["aws", "local"])
@pytest.mark.parametrize("component", ["scheduler", "worker"])
def test_the_program_pods_meet_restricted(settings, component):
    assert restricted_violations(templates(settings)[component]["spec"]) == []


def _container(spec: dict) -> dict:
    return spec["containers"][0]


BREAKAGES = {
    "runAsNonRoot": lambda s: s["securityContext"].pop("runAsNonRoot"),
    "root user": lambda s: _container(s)["securityContext"].update(runAsUser=0),
    "privilege escalation": lambda s: _container(s)["securityContext"].update(allowPrivilegeEscalation=True),
    "escalation unset": lambda s: _container(s)["securityContext"].pop("allowPrivilegeEscalation"),
    "no drop ALL": lambda s: _container(s)["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
    "added capability": lambda s: _container(s)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
    "seccomp unconfined": lambda s: _container(s)["securityContext"].update(
        seccompProfile={"type": "Unconfined"}
    ),
    "no seccomp": lambda s: s["securityContext"].pop("seccompProfile"),
    "hostPath": lambda s: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "hostNetwork": lambda s: s.update(hostNetwork=True),
    "privileged": lambda s: _container(s)["securityContext"].update(privileged=True),
    "hostPort": lambda s: _container(s)["ports"].append({"containerPort": 22, "hostPort": 22}),
    "unsafe sysctl": lambda s: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
    "init container": lambda s: s.update(initContainers=[{"name": "init", "image": "busybox"}]),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_restricted_check_catches(breakage):
    spec = copy.deepcopy(templates(aws_settings())["worker"]["spec"])
    BREAKAGES[breakage](spec)
    assert restricted_violations(spec), breakage


# ---------------------------------------------------------------- PriorityClass, default ServiceAccount


def test_scheduler_priority_class():
    settings = aws_settings()
    names = names_of(settings)
    pc = guards.scheduler_priority_class(settings, names)
    assert pc["metadata"]["name"] == guards.priority_class_name(names) == f"{NS}-{names.scheduler}"
    assert "namespace" not in pc["metadata"]  # cluster-scoped
    assert 0 < pc["value"] < 1_000_000_000  # above ordinary pods, within the user-definable range
    assert pc["preemptionPolicy"] == "PreemptLowerPriority" and pc["globalDefault"] is False


def test_default_service_account_has_no_token():
    settings = local_settings()
    sa = guards.default_service_account(settings, names_of(settings))
    assert sa["metadata"]["name"] == "default" and sa["metadata"]["namespace"] == settings.namespace
    assert sa["automountServiceAccountToken"] is False
