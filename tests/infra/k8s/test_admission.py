"""The admission rules of issue 20 item 12, each allowed and denied, by cel-python on admission requests
shaped as the apiserver sends them (the evaluator and the request builders of admission_review.py):

- the scheduler's account may not delete a running worker pod with `gracePeriodSeconds` below the
  workers' termination grace (a force-delete loses the results the worker holds);
- it may record Events only about its own objects (the worker or scheduler Deployment, or a pod, of its
  namespace), in its namespace;
- a second policy lets only pods of the Dask namespace use the scheduler's PriorityClass.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from dask_adaptive.backends.kubernetes import ranking
from infra.k8s import admission
from testbed.infra.admission_review import (
    NAMES,
    NS,
    SETTINGS,
    WORKER,
    pod,
    request,
    review,
)
from tests.infra.schema import schema_errors

GRACE = SETTINGS.termination_grace_seconds
assert GRACE > 1  # the "one second short" case below needs room


# ---------------------------------------------------------------- deletes and their grace period


def deleting(old: dict, grace: int | None, **kw) -> tuple:
    """A DELETE of `old` as admission sees it: DeleteOptions with gracePeriodSeconds as the apiserver
    filled it in (the caller's value, else the pod's own; 0 for a pod never scheduled or finished)."""
    req = request("DELETE", "pods", old["metadata"]["name"], **kw)
    if grace is not None:
        req["options"]["gracePeriodSeconds"] = grace
    return req, None, old


def unscheduled(p: dict) -> dict:
    p = copy.deepcopy(p)
    del p["spec"]["nodeName"]
    p["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}
    return p


def finished(p: dict, phase: str) -> dict:
    p = copy.deepcopy(p)
    p["status"] = {**p["status"], "phase": phase}
    return p


def booting(p: dict) -> dict:
    """Bound to a node, containers not started yet: the pod may already run, so it counts as running."""
    p = copy.deepcopy(p)
    p["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    return p


FORCE = "gracePeriodSeconds below the workers'"

DELETE_CASES = [
    ("plain delete (options without a grace period)", deleting(WORKER, None), "allowed"),
    ("the pod's own grace, as the apiserver fills it in", deleting(WORKER, GRACE), "allowed"),
    ("a longer grace", deleting(WORKER, GRACE + 60), "allowed"),
    ("force-delete a running worker (grace 0)", deleting(WORKER, 0), "denied"),
    ("one second short of the workers' grace", deleting(WORKER, GRACE - 1), "denied"),
    ("grace 0 on a worker bound to a node but not started", deleting(booting(WORKER), 0), "denied"),
    ("cancel a never-scheduled worker (the apiserver's 0)", deleting(unscheduled(WORKER), 0), "allowed"),
    ("remove a Failed worker (0)", deleting(finished(WORKER, "Failed"), 0), "allowed"),
    ("remove a Succeeded worker (0)", deleting(finished(WORKER, "Succeeded"), 0), "allowed"),
]


@pytest.mark.parametrize(("case", "objects", "verdict"), DELETE_CASES, ids=[c[0] for c in DELETE_CASES])
def test_worker_deletes_keep_the_workers_grace(case, objects, verdict):
    decision = review(admission.admission_policy(SETTINGS, NAMES), *objects)
    assert decision.errors == [], decision.errors
    assert decision.verdict == verdict, (case, decision)
    if verdict == "denied":
        assert [m for m in decision.denied if FORCE in m] == decision.denied, decision.denied


def test_the_grace_floor_follows_the_configured_termination_grace():
    from testbed.infra import builders

    settings = builders.dask(
        {"terminationGracePeriodSeconds": 900}, target="local", namespace=NS
    )  # a stack with a longer grace
    assert settings.termination_grace_seconds == 900
    policy = admission.admission_policy(settings, NAMES)
    assert review(policy, *deleting(WORKER, 900)).verdict == "allowed"
    assert review(policy, *deleting(WORKER, 899)).verdict == "denied"


# ---------------------------------------------------------------- Events


def preload_event(namespace: str = NS, deployment: str = NAMES.worker) -> dict:
    """What the preload records (ranking.build_event, the function backend.py `record` calls)."""
    doc = {
        "metadata": {
            "name": deployment,
            "uid": "c0ffee00-0000-4000-8000-0000000000cc",
            "resourceVersion": "9",
        }
    }
    return ranking.build_event(
        namespace, doc, "ScaleUp", "2 -> 3 workers", datetime.now(UTC), "dask-scheduler"
    )


def core_event(involved: dict, related: dict | None = None) -> dict:
    event = preload_event()
    event["involvedObject"] = involved
    if related is not None:
        event["related"] = related
    return event


def new_event(regarding: dict | None) -> dict:
    """An events.k8s.io/v1 Event (`regarding`, not `involvedObject`)."""
    event = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "x.1", "namespace": NS},
        "eventTime": "2026-12-01T20:00:00.000000Z",
        "reportingController": "dask-adaptive",
        "reportingInstance": "dask-scheduler",
        "action": "Scale",
        "reason": "ScaleUp",
        "type": "Normal",
    }
    if regarding is not None:
        event["regarding"] = regarding
    return event


def ref(kind: str, name: str, namespace: str | None = NS, api_version: str | None = None) -> dict:
    out = {"kind": kind, "name": name}
    if namespace is not None:
        out["namespace"] = namespace
    if api_version is not None:
        out["apiVersion"] = api_version
    return out


def creating(event: dict, namespace: str = NS, **kw) -> tuple:
    group = "events.k8s.io" if event.get("apiVersion") == "events.k8s.io/v1" else ""
    return request("CREATE", "events", "", group=group, kind="Event", namespace=namespace, **kw), event, None


def patching(old: dict, new: dict) -> tuple:
    return request("UPDATE", "events", old["metadata"]["name"], kind="Event"), new, old


WORKER_DEPLOYMENT = ref("Deployment", NAMES.worker, api_version="apps/v1")
SCHEDULER_POD = ref("Pod", f"{NAMES.scheduler}-7d9c8b6f5-q7m4d", api_version="v1")
OWN_EVENT = preload_event()
BUMPED = {**copy.deepcopy(OWN_EVENT), "count": 2}
FOREIGN_EVENT = core_event(ref("Deployment", "payments", namespace="shop", api_version="apps/v1"))
FOREIGN_EVENT["metadata"]["namespace"] = NS
HIJACKED = {**copy.deepcopy(FOREIGN_EVENT), "involvedObject": WORKER_DEPLOYMENT}
ABOUT = "only record Events about its own objects"
WHERE = "only create or patch Events in namespace"


def dep(name: str, namespace: str = NS, api_version: str = "apps/v1") -> dict:
    return ref("Deployment", name, namespace, api_version)


def about(involved: dict, related: dict | None = None) -> tuple:
    """A core/v1 Event about `involved` (and `related`) created by the scheduler in its namespace."""
    return creating(core_event(involved, related))


OTHER_NS = "adask-other"
OK, NO, SKIP = "allowed", "denied", "unmatched"
EVENT_CASES = [
    # --- allowed: what the preload (and the rbac check of tests/kube) records
    ("the preload's own Event (ranking.build_event)", creating(OWN_EVENT), OK, ""),
    ("about the scheduler Deployment", creating(preload_event(deployment=NAMES.scheduler)), OK, ""),
    ("about a pod of its namespace (no apiVersion)", about(ref("Pod", "dask-worker-x")), OK, ""),
    ("about its own pod, related the worker Deployment", about(SCHEDULER_POD, WORKER_DEPLOYMENT), OK, ""),
    ("events.k8s.io/v1 about the worker Deployment", creating(new_event(WORKER_DEPLOYMENT)), OK, ""),
    ("patch (count bump) of its own Event", patching(OWN_EVENT, BUMPED), OK, ""),
    # --- denied: forged Events
    ("about another Deployment of its namespace", about(dep("other")), NO, ABOUT),
    ("about a Deployment of another namespace", creating(FOREIGN_EVENT), NO, ABOUT),
    ("about a worker Deployment named alike elsewhere", about(dep(NAMES.worker, OTHER_NS)), NO, ABOUT),
    ("about a Node (cluster-scoped)", about(ref("Node", "ip-10-0-1-23", namespace=None)), NO, ABOUT),
    ("about a Secret of its namespace", about(ref("Secret", "dask-tls-ca", api_version="v1")), NO, ABOUT),
    ("a Deployment of another API group", about(dep(NAMES.worker, api_version="extensions/v1")), NO, ABOUT),
    ("related to a Deployment elsewhere", about(WORKER_DEPLOYMENT, dep("payments", "shop")), NO, ABOUT),
    ("events.k8s.io/v1 without regarding", creating(new_event(None)), NO, ABOUT),
    ("events.k8s.io/v1 about a Deployment elsewhere", creating(new_event(dep("pay", "shop"))), NO, ABOUT),
    ("patch another's Event into its own", patching(FOREIGN_EVENT, HIJACKED), NO, ABOUT),
    ("create in another namespace", creating(preload_event(OTHER_NS), namespace=OTHER_NS), NO, WHERE),
    ("delete an Event", (request("DELETE", "events", "x.1", kind="Event"), None, OWN_EVENT), NO, WHERE),
    # --- not this policy's business
    ("another user's Event", creating(FOREIGN_EVENT, username="system:serviceaccount:shop:x"), SKIP, ""),
]  # fmt: skip


@pytest.mark.parametrize(("case", "objects", "verdict", "why"), EVENT_CASES, ids=[c[0] for c in EVENT_CASES])
def test_events_only_about_its_own_objects(case, objects, verdict, why):
    decision = review(admission.admission_policy(SETTINGS, NAMES), *objects)
    assert decision.errors == [], decision.errors
    assert decision.verdict == verdict, (case, decision)
    if verdict == "denied":
        assert any(why in m for m in decision.denied), decision.denied


def test_the_events_the_preload_records_are_allowed_for_every_reason():
    """Every reason the backend records (ScaleUp, retired, WrongPodRemoved, ...) yields the same shape."""
    policy = admission.admission_policy(SETTINGS, NAMES)
    doc = {"metadata": {"name": NAMES.worker, "uid": "u", "resourceVersion": "1"}}
    for reason in ("ScaleUp", "ScaleDown", "retired", "WrongPodRemoved", "ApiError"):
        event = ranking.build_event(NS, doc, reason, "m", datetime.now(UTC), "dask-scheduler")
        assert review(policy, *creating(event)).verdict == "allowed", reason


# ---------------------------------------------------------------- the scheduler's PriorityClass

CLASS = NAMES.scheduler_priority_class


def review_priority(obj: dict, namespace: str, operation: str = "CREATE", sub: str = "", user: str = ""):
    policy = admission.priority_class_policy(SETTINGS, NAMES)
    spec = {"matchConditions": [], "variables": [], **policy["spec"]}  # this policy has neither
    kw = {"username": user} if user else {}
    req = request(operation, "pods", obj["metadata"].get("name", ""), sub=sub, namespace=namespace, **kw)
    return review({**policy, "spec": spec}, req, obj, None)


def bare_pod(namespace: str, priority_class: str | None) -> dict:
    spec = {"containers": [{"name": "c", "image": "busybox"}]}
    if priority_class is not None:
        spec["priorityClassName"] = priority_class
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": spec,
    }


def scheduler_pod(namespace: str = NS) -> dict:
    p = pod("scheduler", f"{NAMES.scheduler}-7d9c8b6f5-q7m4d", namespace=namespace)
    assert p["spec"]["priorityClassName"] == CLASS
    return p


PRIORITY = f"only pods of namespace {NS} may use PriorityClass {CLASS}"

PRIORITY_CASES = [
    ("the scheduler pod in its namespace", scheduler_pod(), NS, "allowed"),
    ("another pod of the Dask namespace", bare_pod(NS, CLASS), NS, "allowed"),
    ("a pod elsewhere without a class", bare_pod("shop", None), "shop", "allowed"),
    ("a pod elsewhere with its own class", bare_pod("kube", "system-cluster-critical"), "kube", "allowed"),
    ("a pod elsewhere taking the scheduler's class", bare_pod("shop", CLASS), "shop", "denied"),
    ("the scheduler's template copied elsewhere", scheduler_pod("adask-other"), "adask-other", "denied"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "obj", "namespace", "verdict"), PRIORITY_CASES, ids=[c[0] for c in PRIORITY_CASES]
)
def test_only_the_dask_namespace_may_use_the_schedulers_priority_class(case, obj, namespace, verdict):
    decision = review_priority(obj, namespace)
    assert decision.errors == [], decision.errors
    assert decision.verdict == verdict, (case, decision)
    if verdict == "denied":
        assert decision.denied == [PRIORITY]


def test_the_priority_policy_judges_every_user_and_only_pod_creation():
    # no matchConditions: a cluster admin, a controller or the scheduler's own account alike
    admin = review_priority(bare_pod("shop", CLASS), "shop", user="kubernetes-admin")
    assert admin.verdict == "denied"
    # the class is immutable on a pod, and a pod's subresources carry no pod spec: not matched
    assert review_priority(bare_pod("shop", CLASS), "shop", operation="UPDATE").verdict == "unmatched"
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p", "namespace": "shop"}}
    assert review_priority(eviction, "shop", sub="eviction").verdict == "unmatched"


def test_the_new_policies_are_valid_fail_closed_and_bound_with_deny():
    policy = admission.priority_class_policy(SETTINGS, NAMES)
    binding = admission.priority_class_policy_binding(SETTINGS, NAMES)
    main = admission.admission_policy(SETTINGS, NAMES)
    for manifest in (policy, binding, main):
        assert schema_errors(manifest, "1.33") == []
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    # cluster-scoped: one per stack, and not the scheduler policy's name
    assert NS in policy["metadata"]["name"] and policy["metadata"]["name"] != main["metadata"]["name"]
    # the scheduler policy now also sees events (both API groups), which RBAC lets it create and patch
    events = [r for r in main["spec"]["matchConstraints"]["resourceRules"] if "events" in r["resources"]]
    assert events and set(events[0]["apiGroups"]) == {"", "events.k8s.io"}


def test_the_new_cel_uses_only_the_core_and_has():
    """cel-python evaluates these exactly only if no Kubernetes CEL library function appears."""
    specs = [
        admission.admission_policy(SETTINGS, NAMES)["spec"],
        admission.priority_class_policy(SETTINGS, NAMES)["spec"],
    ]
    expressions = [
        e["expression"] for s in specs for key in ("variables", "validations") for e in s.get(key, [])
    ]
    extensions = (".startsWith(", ".endsWith(", ".matches(", ".split(", "url(", "quantity(", ".exists_one(")
    assert not [e for e in expressions for x in extensions if x in e]
