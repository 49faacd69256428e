"""The program's own admission policies judged on the requests a real API server sends.

The policies (infra/k8s/admission.py, built from the stack's settings as tests/infra builds them) are
served as validating webhooks (testbed/kube/admission_webhook.py) on the 1.20 control plane, next to the
stack's other objects (recorded from the Pulumi program as test_stack_applied.py does). The scheduler's
requests are made with a real TokenRequest token of its ServiceAccount, so RBAC runs first, then the
API server's own validation, then the policy. Each test checks the HTTP answer, the object afterwards and
the AdmissionReview the policy saw (e.g. the gracePeriodSeconds the server filled in). Every review is
also evaluated by Google's CEL runtime (cel-expr-python) and must read every expression as cel-python
does. The stack and the request helpers live in testbed/kube/admission_stack.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from dask_adaptive.backends.kubernetes import ranking
from infra.k8s import admission
from infra.k8s import dask_objects as kd
from testbed.infra.cel_crosscheck import evaluate_both, expressions
from testbed.kube.admission_stack import (
    APPS,
    CORE,
    EVENTS,
    Stack,
    answer,
    delete,
    judged,
    pod_or_none,
    run,
    worker_pods,
)
from testbed.kube.admission_stack import no_workers_left as no_workers_left  # autouse fixture
from testbed.kube.admission_stack import stack as stack  # the module's stack fixture
from testbed.kube.admission_webhook import DOMAIN, Review
from testbed.kube.admission_webhook import admission_webhook as admission_webhook  # the fixture
from testbed.kube.control_plane import ControlPlane, wait_for
from testbed.kube.rest import MERGE_PATCH

pytestmark = pytest.mark.kube
STRATEGIC = "application/strategic-merge-patch+json"  # merges `containers` by name: an image swap alone


def test_the_api_server_calls_the_webhooks_it_was_given(kube: ControlPlane, stack: Stack) -> None:
    """Preconditions: the stock admission chain (ValidatingAdmissionWebhook on, as by default in 1.20) and
    a loopback HTTPS webhook reached by URL with the CA in caBundle."""
    (apiserver,) = [c for c in kube.components if c.name == "kube-apiserver"]
    assert not [a for a in apiserver.argv if "admission-plugins" in a], apiserver.argv
    log = apiserver.log.read_text().splitlines()
    loaded = [line for line in log if "validating admission controller" in line]
    assert loaded and "ValidatingAdmissionWebhook" in loaded[0], loaded
    keys = ("operations", "apiGroups", "apiVersions", "resources")
    for p in (stack.policy, stack.priority):
        name = p["metadata"]["name"]
        config = stack.admin.get(
            f"/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/{name}.{DOMAIN}"
        )
        (hook,) = config["webhooks"]
        assert hook["clientConfig"]["url"] == f"https://127.0.0.1:{stack.hook.port}/validate/{name}"
        assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
        assert hook["failurePolicy"] == p["spec"]["failurePolicy"] == "Fail"
        rules = p["spec"]["matchConstraints"]["resourceRules"]
        assert [{k: r[k] for k in keys} for r in hook["rules"]] == [{k: r[k] for k in keys} for r in rules]
        assert stack.reviews(p), f"{name} saw no request"


# ---------------------------------------------------------------- (a) deletes keep the workers' grace


def test_a_running_worker_is_deleted_only_with_the_workers_grace(stack: Stack) -> None:
    s, grace = stack, stack.settings.termination_grace_seconds
    force = s.message("gracePeriodSeconds below")
    pods = worker_pods(s, 3)
    running, booting, failed = (
        run(s, p, ph) for p, ph in zip(pods, ("Running", "Pending", "Failed"), strict=True)
    )

    def scheduler_deletes(
        pod: str, grace: int | None, dry_run: bool = False
    ) -> tuple[tuple[int, str], Review]:
        return judged(s, lambda: delete(s.scheduler, s, pod, grace, dry_run), name=pod, username=s.user)

    # Force-deletes of a running worker: refused with the policy's message, the pod untouched.
    for asked in (0, grace - 1):
        result, seen = scheduler_deletes(running, asked)
        assert result == (403, s.denial(force)) and seen.denied == [force], asked
        assert (
            seen.options["gracePeriodSeconds"] == asked
            and seen.request["oldObject"]["status"]["phase"] == "Running"
        )
    assert pod_or_none(s, running)["metadata"].get("deletionTimestamp") is None
    # A worker bound but not started counts as running. Dry runs are judged (sideEffects None): grace 0
    # refused; the preload's plain DELETE (no options) reaches the policy with the pod's own grace filled
    # in by the API server, and is allowed.
    result, seen = scheduler_deletes(booting, 0, dry_run=True)
    assert result == (403, s.denial(force)) and seen.request["dryRun"] is True
    result, seen = scheduler_deletes(booting, None, dry_run=True)
    assert result == (200, "") and (seen.verdict, seen.options["gracePeriodSeconds"]) == ("allowed", grace)
    # With the workers' grace: allowed, and the pod starts its graceful termination; shortening that
    # grace afterwards (a second DELETE, judged again) is refused.
    result, seen = scheduler_deletes(running, grace)
    assert result == (200, "") and seen.verdict == "allowed"
    result, seen = scheduler_deletes(running, 0)
    assert result == (403, s.denial(force)) and seen.request["oldObject"]["metadata"]["deletionTimestamp"]
    assert pod_or_none(s, running)["metadata"]["deletionGracePeriodSeconds"] == grace
    # A finished worker and never-scheduled ones (the ReplicaSet's replacements; nothing can schedule
    # them): the API server makes any asked grace 0 for them before admission, and they are deletable.
    selector = ",".join(f"{k}={v}" for k, v in kd.selector_labels(s.names, "worker").items())

    def unscheduled() -> list[str] | None:
        pods = s.admin.items(f"{CORE}/{s.ns}/pods", labelSelector=selector)
        names = [p["metadata"]["name"] for p in pods if not p["spec"].get("nodeName")]
        return names if len(names) == 2 else None

    never = wait_for(unscheduled, 30, message="two replacement pods of the ReplicaSet")
    for name, asked in zip([failed, *never], (grace, 0, grace), strict=True):
        result, seen = scheduler_deletes(name, asked)
        assert result == (200, "") and (seen.verdict, seen.options["gracePeriodSeconds"]) == ("allowed", 0)
        wait_for(lambda n=name: pod_or_none(s, n) is None, 10, message=f"{name} deleted at once")


def test_the_only_pod_write_is_the_deletion_cost(stack: Stack) -> None:
    """The preload's merge-patch of pod-deletion-cost passes on a real pod UPDATE; a label change does not."""
    s = stack
    (pod,) = (run(s, p) for p in worker_pods(s, 1))
    path = f"{CORE}/{s.ns}/pods/{pod}"
    cost = {"metadata": {"annotations": {admission.DELETION_COST: "-100"}}}
    result, seen = judged(s, lambda: s.scheduler.patch(path, cost), name=pod, username=s.user)
    assert result == (200, "") and (seen.operation, seen.verdict) == ("UPDATE", "allowed")
    relabel = {"metadata": {"labels": {"app.kubernetes.io/component": "stolen"}}}
    result, seen = judged(s, lambda: s.scheduler.patch(path, relabel), name=pod, username=s.user)
    only_cost = s.message(f"but the {admission.DELETION_COST}")
    assert result == (403, s.denial(only_cost)) and seen.denied == [only_cost]
    assert s.admin.get(path)["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"


# ---------------------------------------------------------------- (b) Events about its own objects only


def event_about(
    s: Stack, involved: dict[str, Any] | None = None, namespace: str | None = None, new: bool = False
) -> dict:
    """The preload's Event (ranking.build_event about the live worker Deployment), about `involved` if given;
    `new` adds what newer recorders send through core/v1 (eventTime, action), which lifts the API server's
    own check that a legacy Event's involvedObject is in the Event's namespace."""
    worker = s.admin.get(f"{APPS}/{s.ns}/deployments/{s.names.worker}")
    event = ranking.build_event(
        namespace or s.ns, worker, "ScaleUp", "2 -> 3 workers", datetime.now(UTC), "sched-0"
    )
    if involved is not None:
        event["involvedObject"] = involved
    if new:
        event.update(eventTime=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), action="Scale")
    return event


def new_event(s: Stack, regarding: dict[str, Any]) -> dict[str, Any]:
    """An events.k8s.io/v1 Event (`regarding`, not `involvedObject`)."""
    return {
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": f"{s.names.worker}.{uuid.uuid4().hex[:8]}"},
        "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": "dask-adaptive/scheduler", "reportingInstance": "sched-0",
        "action": "Scale", "reason": "ScaleUp", "type": "Normal", "note": "2 -> 3 workers",
        "regarding": regarding,
    }  # fmt: skip


def test_b_events_only_about_its_own_objects(stack: Stack) -> None:
    s = stack
    about = s.message("only record Events about its own objects")
    events = f"{CORE}/{s.ns}/events"
    # Allowed: what the preload records (about the worker Deployment), and its count bump (UPDATE).
    own = event_about(s)
    name = own["metadata"]["name"]
    result, seen = judged(s, lambda: s.scheduler.post(events, own), name=name, username=s.user)
    assert result == (200, "") and (seen.operation, seen.verdict) == ("CREATE", "allowed")
    assert seen.request["object"]["involvedObject"]["name"] == s.names.worker
    result, seen = judged(
        s, lambda: s.scheduler.patch(f"{events}/{name}", {"count": 2}), name=name, username=s.user
    )
    assert result == (200, "") and (seen.operation, seen.verdict) == ("UPDATE", "allowed")
    # Denied by the policy: another Deployment of its namespace; with eventTime set (the legacy namespace
    # check off), a Deployment or a pod of another namespace.
    elsewhere = {"apiVersion": "apps/v1", "kind": "Deployment", "name": s.names.worker, "namespace": s.other}
    denied = {
        "another Deployment": event_about(s, {**elsewhere, "name": "other", "namespace": s.ns}),
        "a Deployment elsewhere": event_about(s, elsewhere, new=True),
        "a pod elsewhere": event_about(
            s, {**elsewhere, "apiVersion": "v1", "kind": "Pod", "name": "p"}, new=True
        ),
    }
    for case, event in denied.items():
        result, seen = judged(
            s, lambda e=event: s.scheduler.post(events, e), name=event["metadata"]["name"], username=s.user
        )
        assert result == (403, s.denial(about)) and seen.denied == [about], case
    # A legacy Event (no eventTime) about another namespace's Deployment never reaches admission: the API
    # server's own validation refuses it first (422).
    legacy = event_about(s, elsewhere)
    code, message = answer(lambda: s.scheduler.post(events, legacy))
    assert code == 422 and "does not match event.namespace" in message, message
    assert s.reviews(name=legacy["metadata"]["name"]) == []
    # events.k8s.io/v1 (`regarding`): its worker Deployment allowed, another namespace's denied.
    for regarding, expected in (
        ({**elsewhere, "namespace": s.ns}, (200, "")),
        (elsewhere, (403, s.denial(about))),
    ):
        event = new_event(s, regarding)
        post = lambda e=event: s.scheduler.post(f"{EVENTS}/{s.ns}/events", e)  # noqa: E731
        result, seen = judged(s, post, name=event["metadata"]["name"], username=s.user)
        assert result == expected and seen.request["resource"]["group"] == "events.k8s.io", regarding
    # In another namespace: RBAC refuses before admission (the Role is namespaced).
    code, message = answer(
        lambda: s.scheduler.post(f"{CORE}/{s.other}/events", event_about(s, elsewhere, s.other))
    )
    assert code == 403 and 'cannot create resource "events"' in message, message
    assert s.reviews(namespace=s.other, username=s.user) == []


# ---------------------------------------------------------------- (c) scale bounded by max_workers


def test_c_scale_is_bounded_by_max_workers(stack: Stack) -> None:
    s, most = stack, stack.settings.max_workers
    scale = f"{APPS}/{s.ns}/deployments/{s.names.worker}/scale"
    too_many = s.message(f"more than {most} workers")
    where = {"name": s.names.worker, "resource": "deployments/scale", "username": s.user}
    result, seen = judged(s, lambda: s.scheduler.patch(scale, {"spec": {"replicas": most + 1}}), **where)
    assert result == (403, s.denial(too_many)) and seen.operation == "UPDATE"  # a PATCH arrives as UPDATE
    assert seen.request["kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    current = s.scheduler.get(scale)
    assert current["spec"].get("replicas", 0) == 0
    put = {**current, "spec": {"replicas": most + 1}}  # an UPDATE proper (the preload patches)
    assert judged(s, lambda: s.scheduler.put(scale, put), **where)[0] == (403, s.denial(too_many))
    for replicas in (most, 0):
        result, seen = judged(
            s, lambda r=replicas: s.scheduler.patch(scale, {"spec": {"replicas": r}}), **where
        )
        assert result == (200, "") and seen.verdict == "allowed"
        assert s.admin.get(f"{APPS}/{s.ns}/deployments/{s.names.worker}")["spec"]["replicas"] == replicas


# ---------------------------------------------------------------- (d) the scheduler's PriorityClass


def bare_pod(name: str, priority_class: str | None) -> dict[str, Any]:
    """A pod that fits the Dask namespace's quota and is never scheduled."""
    limits = {"cpu": "10m", "memory": "16Mi"}
    spec: dict[str, Any] = {
        "containers": [{"name": "c", "image": "x", "resources": {"requests": limits, "limits": limits}}],
        "nodeSelector": {"nowhere": "true"},
        "automountServiceAccountToken": False,
    }
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_d_only_the_dask_namespace_may_use_the_schedulers_priority_class(stack: Stack) -> None:
    s, pc = stack, stack.names.scheduler_priority_class
    only_here = s.message("may use PriorityClass", s.priority)
    cases = [  # (namespace, pod, expected), all created by admin: this policy judges every user
        (s.other, bare_pod("taker", pc), (403, s.denial(only_here, s.priority))),
        (s.ns, bare_pod("dask-extra", pc), (200, "")),
        (s.other, bare_pod("plain", None), (200, "")),
    ]
    for namespace, pod, expected in cases:
        create = lambda n=namespace, p=pod: s.admin.post(f"{CORE}/{n}/pods", p)  # noqa: E731
        result, seen = judged(s, create, s.priority, name=pod["metadata"]["name"], username="admin")
        assert result == expected and seen.username == "admin", pod
    assert s.admin.get(f"{CORE}/{s.ns}/pods/dask-extra")["spec"]["priority"] == 100000

    # The program's scheduler pod, made by the ReplicaSet controller, was admitted with the class.
    def made_by_controllers() -> list[Review]:
        return [
            r
            for r in s.reviews(s.priority, namespace=s.ns, operation="CREATE")
            if r.request["object"]["spec"].get("priorityClassName") == pc and r.username != "admin"
        ]

    made = wait_for(made_by_controllers, 30, message="the scheduler pod created by the ReplicaSet controller")
    assert {(r.username, r.verdict) for r in made} == {("system:kube-controller-manager", "allowed")}


# ---------------------------------------------------------------- (e) other users are not the policy's


def test_e_other_users_are_never_judged_by_the_scheduler_policy(stack: Stack) -> None:
    s, most = stack, stack.settings.max_workers
    (pod,) = (run(s, p) for p in worker_pods(s, 1))
    result, seen = judged(s, lambda: delete(s.admin, s, pod, 0), name=pod, username="admin")
    assert result == (200, "") and (seen.verdict, seen.username, seen.options["gracePeriodSeconds"]) == (
        "unmatched", "admin", 0,
    )  # fmt: skip
    scale = f"{APPS}/{s.ns}/deployments/{s.names.worker}/scale"
    result, seen = judged(
        s,
        lambda: s.admin.patch(scale, {"spec": {"replicas": most + 1}}),
        name=s.names.worker,
        username="admin",
    )
    assert result == (200, "") and seen.verdict == "unmatched"
    # Everything the scheduler policy saw in this module: the scheduler's requests judged, everyone else's
    # (admin, controller-manager, kube-scheduler, namespace cleanup) admitted unjudged; no evaluation of
    # either policy failed on a real request.
    mine = s.reviews()
    assert {r.verdict for r in mine if r.username != s.user} == {"unmatched"}
    assert all(r.matched for r in mine if r.username == s.user)
    assert {"admin", s.user, "system:kube-controller-manager"} <= {r.username for r in mine}
    assert [(r.policy, r.request) for r in s.hook.reviews() if r.errors] == []


# ---------------------------------------------------------------- (f) the scheduler's token, every action


def test_f_forbidden_actions_with_the_schedulers_token_are_refused(stack: Stack) -> None:
    """What tests a-e leave out: an image swap on a running worker pod, deleting the scheduler's own pod,
    and editing the worker Deployment itself. (Relabelling a worker, scaling above the maximum and
    force-deleting a running worker are refused above; scaling within bounds, a graceful delete and the
    deletion-cost patch are allowed above.)"""
    s = stack
    (pod,) = (run(s, p) for p in worker_pods(s, 1))
    path = f"{CORE}/{s.ns}/pods/{pod}"
    container = s.admin.get(path)["spec"]["containers"][0]
    # A strategic-merge patch changes only the image (a merge-patch of `containers` would replace the list
    # and be refused by the API server's own validation before admission).
    swap = {"spec": {"containers": [{"name": container["name"], "image": "registry.example/evil:1"}]}}
    result, seen = judged(s, lambda: s.scheduler.patch(path, swap, STRATEGIC), name=pod, username=s.user)
    only_cost = s.message(f"but the {admission.DELETION_COST}")
    assert result == (403, s.denial(only_cost)) and seen.operation == "UPDATE", result
    assert seen.request["object"]["spec"]["containers"][0]["image"] == "registry.example/evil:1"
    assert s.admin.get(path)["spec"]["containers"][0]["image"] == container["image"]
    # The same patch by admin goes through: the refusal above is the policy's, not the API server's.
    assert answer(lambda: s.admin.patch(path, swap, STRATEGIC)) == (200, "")
    # The scheduler's own pod (made by its ReplicaSet): the scheduler may not delete it, with or without
    # a grace period.
    selector = ",".join(f"{k}={v}" for k, v in kd.selector_labels(s.names, "scheduler").items())
    (own,) = [p["metadata"]["name"] for p in s.admin.items(f"{CORE}/{s.ns}/pods", labelSelector=selector)]
    workers_only = s.message("may only touch the worker pods")
    for grace in (None, s.settings.termination_grace_seconds, 0):
        result, seen = judged(s, lambda g=grace: delete(s.scheduler, s, own, g), name=own, username=s.user)
        assert result == (403, s.denial(workers_only)) and seen.denied[0] == workers_only, grace
    assert pod_or_none(s, own)["metadata"].get("deletionTimestamp") is None
    # The worker Deployment itself (its image, its labels): RBAC refuses before admission is asked.
    deployment = f"{APPS}/{s.ns}/deployments/{s.names.worker}"
    before = len(s.hook.reviews())
    template = {"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "evil"}]}}}}
    code, message = answer(lambda: s.scheduler.patch(deployment, template, STRATEGIC))
    assert code == 403 and 'cannot patch resource "deployments"' in message, message
    assert [r for r in s.hook.reviews()[before:] if r.username == s.user] == []


def test_g_both_cel_implementations_read_every_real_review_alike(stack: Stack) -> None:
    """Every AdmissionReview the API server sent in this module (the scheduler's, admin's, the controllers'),
    every expression of both policies, by cel-python and by cel-expr-python: equal values everywhere, and
    every validation of the scheduler's policy seen both true and false on real requests."""
    s = stack
    # Dry runs by the scheduler (judged, nothing changed) so that each validation fails at least once even
    # when this test runs alone: scale above the maximum, a force-delete, an image swap, the scheduler's
    # own pod, an Event about another Deployment. (Pod creation and the Deployment's own writes come from
    # the controller-manager, whose requests every expression is evaluated on too.)
    (pod,) = (run(s, p) for p in worker_pods(s, 1))
    container = s.admin.get(f"{CORE}/{s.ns}/pods/{pod}")["spec"]["containers"][0]["name"]
    selector = ",".join(f"{k}={v}" for k, v in kd.selector_labels(s.names, "scheduler").items())
    (own,) = [p["metadata"]["name"] for p in s.admin.items(f"{CORE}/{s.ns}/pods", labelSelector=selector)]
    dry, sched = {"dryRun": "All"}, s.scheduler
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "other", "namespace": s.ns}
    for call in (
        lambda: sched.request(
            "PATCH", f"{APPS}/{s.ns}/deployments/{s.names.worker}/scale",
            {"spec": {"replicas": s.settings.max_workers + 1}}, params=dry, content_type=MERGE_PATCH,
        ),
        lambda: delete(sched, s, pod, 0, dry_run=True),
        lambda: sched.request(
            "PATCH", f"{CORE}/{s.ns}/pods/{pod}",
            {"spec": {"containers": [{"name": container, "image": "e"}]}}, params=dry, content_type=STRATEGIC,
        ),
        lambda: delete(sched, s, own, None, dry_run=True),
        lambda: sched.request("POST", f"{CORE}/{s.ns}/events", event_about(s, other), params=dry),
    ):  # fmt: skip
        assert answer(call)[0] == 403
    # and admin's dry-run Event in another namespace (unmatched, but every expression is evaluated on it)
    elsewhere = {**other, "namespace": s.other}
    event = event_about(s, elsewhere, s.other)
    assert answer(lambda: s.admin.request("POST", f"{CORE}/{s.other}/events", event, params=dry)) == (200, "")
    seen = s.hook.reviews()
    assert len(seen) >= 20 and {r.policy for r in seen} == {
        s.policy["metadata"]["name"],
        s.priority["metadata"]["name"],
    }
    assert [(r.policy, r.operation, r.resource, r.disagreements) for r in seen if r.disagreements] == []
    outcomes: dict[str, set[Any]] = {}
    for r in s.reviews():
        for o in evaluate_both(s.policy, r.request):
            assert o.agree, (o, r.request)
            outcomes.setdefault(o.label, set()).add(repr(o.google))
    validations = [label for label, _ in expressions(s.policy) if label.startswith("validations[")]
    assert {v: outcomes[v] for v in validations} == {v: {"True", "False"} for v in validations}
    n = len(expressions(s.policy))
    print(f"\ncross-checked {len(seen)} real reviews x {n} expressions: no disagreement")
