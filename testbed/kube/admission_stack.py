"""The stack the admission tests judge: the program's objects applied on the 1.20 control plane, its two
policies served by the webhook, the scheduler's real token, and the request helpers the tests share.

Used by tests/kube/test_admission_real.py: the policy's verdicts, the forbidden actions tried with the
scheduler's token, and the two CEL implementations compared on every request.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from infra.config.settings import DaskSettings
from infra.k8s import admission
from infra.k8s import dask_objects as kd
from testbed.infra import builders
from testbed.kube.admission_webhook import DOMAIN, AdmissionWebhook, Review
from testbed.kube.admission_webhook import admission_webhook as admission_webhook  # the fixture
from testbed.kube.control_plane import ControlPlane, wait_for
from testbed.kube.rest import ApiError, Rest
from testbed.kube.stack_apply import StackObjects, apply, record_stack

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
    assert [r.disagreements for r in new if r.disagreements] == [], "cel-python and cel-expr-python differ"
    if len(new) > 1:
        REPEATS[f"{new[-1].operation} {new[-1].resource} {new[-1].name}"] = len(new)
    return result, new[-1]
