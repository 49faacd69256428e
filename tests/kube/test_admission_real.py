"""The program's own admission policies judged on the requests a real API server sends.

The policies (infra/k8s/admission.py, built from the stack's settings as tests/infra builds them) are
served as validating webhooks (testbed/kube/admission_webhook.py) on the 1.20 control plane, next to the
stack's other objects (recorded from the Pulumi program as test_stack_applied.py does). The scheduler's
requests are made with a real TokenRequest token of its ServiceAccount, so RBAC runs first, then the
API server's own validation, then the policy. Each test checks the HTTP answer, the object afterwards and
the AdmissionReview the policy saw (e.g. the gracePeriodSeconds the server filled in).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from dask_adaptive.backends.kubernetes import ranking
from infra.config.settings import DaskSettings
from infra.k8s import admission
from infra.k8s import dask_objects as kd
from testbed.infra import builders
from testbed.kube.admission_webhook import DOMAIN, AdmissionWebhook, Review
from testbed.kube.admission_webhook import admission_webhook as admission_webhook  # the fixture
from testbed.kube.control_plane import ControlPlane, wait_for
from testbed.kube.rest import ApiError, Rest
from testbed.kube.stack_apply import StackObjects, apply, record_stack

pytestmark = pytest.mark.kube

# The local stack's sizing (stacks/Pulumi.local.yaml) in a namespace of its own.
DASK = {
    "minWorkers": 0,
    "maxWorkers": 3,
    "workerCpu": "1",
    "workerMemory": "2Gi",
    "scratchSize": "5Gi",
    "schedulerCpu": "500m",
    "schedulerMemory": "1Gi",
}
CORE, APPS, EVENTS = "/api/v1/namespaces", "/apis/apps/v1/namespaces", "/apis/events.k8s.io/v1/namespaces"


@dataclass
class Stack:
    """The applied stack, its policies as served, and the clients of the two parties."""

    kube: ControlPlane
    hook: AdmissionWebhook
    settings: DaskSettings
    names: kd.Names
    objects: StackObjects
    policy: dict[str, Any]  # the scheduler's policy
    priority: dict[str, Any]  # the PriorityClass policy
    admin: Rest
    scheduler: Rest  # the scheduler ServiceAccount's TokenRequest token
    other: str  # another namespace
    node: str  # a Node nothing is scheduled on: pods are bound to it by hand

    @property
    def ns(self) -> str:
        return self.names.namespace

    @property
    def user(self) -> str:
        return admission.scheduler_username(self.names)

    def message(self, fragment: str, policy: dict[str, Any] | None = None) -> str:
        """The one validation message of the policy containing `fragment`."""
        (found,) = [
            v["message"] for v in (policy or self.policy)["spec"]["validations"] if fragment in v["message"]
        ]
        return found

    def denial(self, message: str, policy: dict[str, Any] | None = None) -> str:
        """How the API server words a webhook's denial."""
        webhook = f"{(policy or self.policy)['metadata']['name']}.{DOMAIN}"
        return f'admission webhook "{webhook}" denied the request: {message}'

    def reviews(self, policy: dict[str, Any] | None = None, **where: Any) -> list[Review]:
        return self.hook.reviews((policy or self.policy)["metadata"]["name"], **where)


def answer(call: Callable[[], Any]) -> tuple[int, str]:
    """(HTTP status, message) of an API call; 2xx is 200."""
    try:
        call()
    except ApiError as exc:
        return exc.status, str(exc.body.get("message") if isinstance(exc.body, dict) else exc.body)
    return 200, ""


@pytest.fixture(scope="module")
def stack(kube: ControlPlane, admission_webhook: AdmissionWebhook) -> Iterator[Stack]:
    """The local stack's objects in a fresh namespace, both policies served, another namespace and a Node."""
    ns = f"adm-{uuid.uuid4().hex[:6]}"
    raw = {**DASK, "namespace": ns}
    settings = builders.dask(raw, target="local", namespace=ns)
    names = kd.Names(settings.namespace)
    objects = record_stack("local", {"adaptive-dask:dask": json.dumps(raw)})
    worker_spec = objects.find("Deployment", names.worker)["spec"]["template"]["spec"]
    assert (
        objects.namespace == ns
        and worker_spec["terminationGracePeriodSeconds"] == settings.termination_grace_seconds
    )
    policy = admission.admission_policy(settings, names)
    priority = admission.priority_class_policy(settings, names)
    admin = kube.rest()
    # Registered before the stack is applied, as on EKS: the stack's own creations are judged too.
    admission_webhook.register(priority)
    admission_webhook.register(policy)
    other = kube.create_namespace("adm-other")
    node = f"{ns}-node"
    # Unschedulable (and tainted not-ready by admission): kube-scheduler never binds a pod to it.
    admin.post("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node},
                                 "spec": {"unschedulable": True}})  # fmt: skip
    try:
        apply(admin, objects.objects, objects.patches)
        kube.wait_service_account(ns, names.worker)  # the ReplicaSet's worker pods are refused before
        token = kube.service_account_token(ns, names.scheduler)
        yield Stack(kube, admission_webhook, settings, names, objects, policy, priority, admin,
                    kube.rest(token=token), other, node)  # fmt: skip
    finally:
        print_summary(admission_webhook, [policy, priority])
        kube.delete_namespace(ns)
        kube.delete_namespace(other)
        for path in (
            f"/api/v1/nodes/{node}",
            f"/apis/scheduling.k8s.io/v1/priorityclasses/{names.scheduler_priority_class}",
        ):
            with contextlib.suppress(ApiError):
                admin.delete(path)


def print_summary(hook: AdmissionWebhook, policies: list[dict[str, Any]]) -> None:
    """Counts of what each policy saw (shown with -s; the figures of the report)."""
    for p in policies:
        seen = hook.reviews(p["metadata"]["name"])
        verdicts = {v: sum(r.verdict == v for r in seen) for v in ("allowed", "denied", "unmatched")}
        errors = sum(bool(r.errors) for r in seen)
        slowest = max((r.seconds for r in seen), default=0.0)
        users = sorted({r.username for r in seen})
        print(f"\n{p['metadata']['name']}: {len(seen)} reviews {verdicts}, {errors} with errors, "
              f"slowest evaluation {slowest * 1000:.0f} ms, users {users}")  # fmt: skip
    print(f"requests judged more than once: {REPEATS}")


# ---------------------------------------------------------------- worker pods, as the ReplicaSet makes them


def worker_pods(s: Stack, replicas: int) -> list[dict[str, Any]]:
    """Scale the worker Deployment (as admin) and return its live, not terminating pods, oldest first."""
    s.admin.patch(f"{APPS}/{s.ns}/deployments/{s.names.worker}/scale", {"spec": {"replicas": replicas}})
    selector = ",".join(f"{k}={v}" for k, v in kd.selector_labels(s.names, "worker").items())

    def live() -> tuple[list[dict[str, Any]]] | None:  # a tuple: an empty list is a valid answer
        pods = s.admin.items(f"{CORE}/{s.ns}/pods", labelSelector=selector)
        pods = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if len(pods) != replicas:
            return None
        return (sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"]),)

    (pods,) = wait_for(live, 30, message=f"{replicas} worker pods of the ReplicaSet")
    return pods


def run(s: Stack, pod: dict[str, Any], phase: str = "Running") -> str:
    """Bind a pod to the node and report `phase` as a kubelet would (Pending: bound, not started yet)."""
    name = pod["metadata"]["name"]
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
               "target": {"apiVersion": "v1", "kind": "Node", "name": s.node}}  # fmt: skip
    s.admin.post(f"{CORE}/{s.ns}/pods/{name}/binding", binding)
    if phase != "Pending":
        s.admin.patch(f"{CORE}/{s.ns}/pods/{name}/status", {"status": {"phase": phase}})
    return name


def delete(rest: Rest, s: Stack, pod: str, grace: int | None = None, dry_run: bool = False) -> Any:
    """DELETE a pod of the stack: DeleteOptions in the body as kubectl sends them, or no body at all (the
    preload's DELETE) when `grace` is None. The API server ignores the query when a body is sent, so a dry
    run goes where the options are."""
    if grace is None:
        return rest.request(
            "DELETE", f"{CORE}/{s.ns}/pods/{pod}", params={"dryRun": "All"} if dry_run else None
        )
    options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": grace}
    if dry_run:
        options["dryRun"] = ["All"]
    return rest.request("DELETE", f"{CORE}/{s.ns}/pods/{pod}", options)


@pytest.fixture(autouse=True)
def no_workers_left(stack: Stack) -> Iterator[None]:
    """Each test starts and ends with the worker Deployment at 0 and no worker pod, so none depends on
    another's leftovers (a pod deleted with grace stays Terminating here: there is no kubelet)."""
    yield
    worker_pods(stack, 0)
    selector = ",".join(f"{k}={v}" for k, v in kd.selector_labels(stack.names, "worker").items())
    path = f"{CORE}/{stack.ns}/pods"
    for pod in stack.admin.items(path, labelSelector=selector):
        stack.admin.delete(f"{path}/{pod['metadata']['name']}", {"gracePeriodSeconds": 0})
    wait_for(lambda: not stack.admin.items(path, labelSelector=selector), 30, message="no worker pod left")


def pod_or_none(s: Stack, name: str) -> dict[str, Any] | None:
    return s.admin.get_or_none(f"{CORE}/{s.ns}/pods/{name}")


# Requests the API server judged more than once (case -> times), for the summary.
REPEATS: dict[str, int] = {}


def judged(
    s: Stack, call: Callable[[], Any], policy: dict[str, Any] | None = None, **where: Any
) -> tuple[tuple[int, str], Review]:
    """Make one request; return its (status, message) and the review the policy made of it.

    The API server may judge one request several times, each with a new uid: the storage layer validates
    against its cached copy first and, on a refusal or a conflict, again against a fresh read; and a pod's
    immediate delete is two writes (deletionTimestamp set, then removal), each judged. Every attempt must
    get the same verdict; the last is returned.
    """
    name = (policy or s.policy)["metadata"]["name"]
    before = len(s.hook.reviews())
    result = answer(call)
    new = [
        r
        for r in s.hook.reviews()[before:]
        if r.policy == name and all(getattr(r, k) == v for k, v in where.items())
    ]
    assert new, f"{name} saw no request matching {where}; answer {result}"
    assert len({(r.verdict, tuple(r.denied), tuple(r.errors)) for r in new}) == 1, [r.request for r in new]
    if len(new) > 1:
        REPEATS[f"{new[-1].operation} {new[-1].resource} {new[-1].name}"] = len(new)
    return result, new[-1]


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
