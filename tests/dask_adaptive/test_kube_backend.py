"""The kubernetes backend's decisions (pure functions) and its removal sequence against an in-memory cluster.

The in-memory cluster models what matters here: a Deployment's /scale and a ReplicaSet that picks pods the
way Kubernetes 1.20 does (unscheduled, Pending, NotReady, then newest first; deletion cost only if asked).
The real control plane runs in test_kube_e2e.py.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from dask_adaptive.backends.base import BackendError, BackendUnavailable, Phase, Unit
from dask_adaptive.backends.departures import COUNTED, Departures, Reason, Stage
from dask_adaptive.backends.kubernetes.api import KubeApiError
from dask_adaptive.backends.kubernetes.backend import KubernetesBackend
from dask_adaptive.backends.kubernetes.ranking import (
    DELETION_COST,
    LOWEST_COST,
    build_event,
    deletion_rank,
    owned_by,
    parse_selector,
    plan_removal,
    pod_unit,
    required_permissions,
    selector_matches,
    units_in_deletion_order,
    verify_removal,
)

_serial = itertools.count()


def pod(
    name: str,
    *,
    node: str | None = "n1",
    phase: str = "Running",
    ready: bool = True,
    deleting: bool = False,
    cost: str | None = None,
    labels: dict[str, str] | None = None,
    owner: str | None = "workers-5d8f",
) -> dict[str, Any]:
    """A worker pod of Deployment `workers` (its ReplicaSet `workers-5d8f` owns it) unless told otherwise."""
    template_hash = "5d8f"
    meta: dict[str, Any] = {
        "name": name,
        "annotations": {},
        "serial": next(_serial),
        "labels": labels
        if labels is not None
        else {"app": "dask-worker", "pod-template-hash": template_hash},
    }
    if owner is not None:
        ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "controller": True}
        meta["ownerReferences"] = [ref]
    if cost is not None:
        meta["annotations"][DELETION_COST] = cost
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}] if phase == "Running" else []
    return {
        "metadata": meta,
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase, "conditions": conditions},
    }


# -- pure decisions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "p,was_ready,expected",
    [
        (pod("a", node=None, phase="Pending"), False, Unit("a", Phase.PENDING)),  # unscheduled: no node
        (pod("a", phase="Pending"), False, Unit("a", Phase.PENDING, node="n1")),
        (pod("a", ready=False), False, Unit("a", Phase.STARTING, node="n1")),
        (pod("a", ready=False), True, Unit("a", Phase.RUNNING, False, "n1")),  # retired: readiness dropped
        (pod("a", ready=False, cost=LOWEST_COST), False, Unit("a", Phase.RUNNING, False, "n1")),  # ours
        (pod("a"), False, Unit("a", Phase.RUNNING, True, "n1")),
        (pod("a", deleting=True), True, Unit("a", Phase.TERMINATING, True, "n1")),
        (pod("a", phase="Failed"), False, Unit("a", Phase.TERMINATING, node="n1")),
    ],
)
def test_pod_phase_mapping(p, was_ready, expected):
    assert pod_unit(p, was_ready) == expected


def test_deletion_rank_follows_the_replicaset_order():
    ranks = [
        deletion_rank(p)
        for p in (
            pod("a", node=None, phase="Pending"),
            pod("b", phase="Pending"),
            pod("c", phase="Unknown"),
            pod("d", ready=False),
            pod("e"),
        )
    ]
    assert ranks == [0, 1, 2, 3, 4]


def test_units_come_in_the_replicasets_deletion_order():
    """Inside one phase the controller keeps this order when it cancels: an unschedulable pod goes before
    one already bound to a node (both PENDING), as the ReplicaSet itself would choose."""
    pods = [
        pod("a-bound", phase="Pending"),
        pod("z-unscheduled", node=None, phase="Pending"),
        pod("m"),
        pod("b"),
    ]
    units = units_in_deletion_order(pods, seen_ready={"m"})
    assert [u.name for u in units] == ["z-unscheduled", "a-bound", "b", "m"]
    assert [u.phase for u in units[:2]] == [Phase.PENDING, Phase.PENDING]


def test_plan_is_safe_when_named_pods_are_notready_and_the_rest_ready():
    pods = [pod("w1", ready=False), pod("w2", ready=False), pod("w3"), pod("w4"), pod("gone", deleting=True)]
    plan = plan_removal(pods, ["w1", "w2", "gone", "never-existed"])
    assert plan.safe
    assert plan.present == ("w1", "w2")
    assert plan.missing == ("gone", "never-existed")


def test_plan_waits_for_readiness_to_drop():
    plan = plan_removal([pod("w1"), pod("w2")], ["w1"])
    assert (plan.safe, plan.still_ready, plan.waitable) == (False, ("w1",), True)


def test_plan_sees_pending_pods_that_the_replicaset_would_take_first():
    pods = [pod("w1", ready=False), pod("p1", node=None, phase="Pending"), pod("w2")]
    plan = plan_removal(pods, ["w1"])
    assert plan.outranking == ("p1",)
    assert not plan.safe and not plan.waitable  # a Pending pod may wait minutes for a node


def test_plan_sees_a_tie_with_a_starting_pod_and_waits_for_it():
    plan = plan_removal([pod("w1", ready=False), pod("s1", ready=False), pod("w2")], ["w1"])
    assert (plan.outranking, plan.safe, plan.waitable) == (("s1",), False, True)


def test_plan_cancelling_pending_pods_ties_with_other_pending_pods():
    pods = [pod("p1", node=None, phase="Pending"), pod("p2", node=None, phase="Pending"), pod("w")]
    plan = plan_removal(pods, ["p1"])
    assert plan.outranking == ("p2",) and not plan.waitable


def test_verify_finds_the_wrong_pick():
    after = [pod("w1", ready=False), pod("w3"), pod("w2", deleting=True)]
    check = verify_removal(["w1", "w2", "w3"], after, ["w1"], target=2)
    assert (check.settled, check.removed, check.wrong, check.survivors) == (True, (), ("w2",), ("w1",))


def test_verify_ignores_pods_created_after_the_write():
    check = verify_removal(
        ["w1", "w2"], [pod("w2"), pod("new", node=None, phase="Pending")], ["w1"], target=1
    )
    assert (check.settled, check.removed, check.wrong) == (False, ("w1",), ())


def test_selector_parsing_and_matching():
    assert parse_selector("app=dask, component==worker,tier!=x,gpu,!spot") == [
        ("app", "=", "dask"),
        ("component", "=", "worker"),
        ("tier", "!=", "x"),
        ("gpu", "exists", ""),
        ("spot", "!", ""),
    ]
    labels = {"app": "dask", "component": "worker", "gpu": "1"}
    assert selector_matches("app=dask,component=worker,gpu,!spot,tier!=x", labels)
    assert not selector_matches("app=dask,component=scheduler", labels)
    assert not selector_matches("spot", labels)
    with pytest.raises(ValueError, match="set-based"):
        parse_selector("app in (a,b)")


def test_event_is_about_the_deployment():
    dep = {"metadata": {"name": "workers", "uid": "u-1", "resourceVersion": "7"}}
    ev = build_event("ns", dep, "ScaleDown", "x" * 2000, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "sched-0")
    assert ev["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "workers",
        "namespace": "ns",
        "uid": "u-1",
        "resourceVersion": "7",
    }
    assert (ev["type"], ev["firstTimestamp"], len(ev["message"])) == ("Normal", "2026-01-02T03:04:05Z", 1024)
    assert ev["metadata"]["name"].startswith("workers.")
    assert build_event("ns", dep, "WrongPodRemoved", "m", datetime.now(UTC), "s")["type"] == "Warning"


def test_required_permissions_cover_the_pulumi_role():
    assert ("patch", "apps", "deployments", "scale", "w") in required_permissions("w")
    assert {p[2] for p in required_permissions("w")} == {"deployments", "pods", "events"}
    assert ("watch", "", "pods", "", "") in required_permissions("w")  # the pod cache's watch


# -- the removal sequence against an in-memory cluster ---------------------------------------------


class FakeCluster:
    """A Deployment + ReplicaSet in memory, answering the KubeApi calls the backend makes.

    `honour_cost` switches between 1.20 (ignored) and 1.22+ ranking; `retired` pods turn NotReady after
    `probe_lag` pod listings (the readiness probe failing); `pick` overrides the ReplicaSet's choice.
    """

    url = "memory://"

    def __init__(
        self,
        ready: int = 0,
        pending: int = 0,
        honour_cost: bool = False,
        probe_lag: int = 1,
        labels: dict[str, str] | None = None,  # of the pods the ReplicaSet makes
    ) -> None:
        self.labels = labels
        self.pods: dict[str, dict[str, Any]] = {}
        self.replicas = 0
        self.honour_cost = honour_cost
        self.probe_lag = probe_lag
        self.retired: dict[str, int] = {}
        self.calls: list[tuple[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.denied: set[tuple[str, str, str]] = set()
        self.fail: dict[str, Exception] = {}
        self.pick: list[str] | None = None
        self.errors = 0
        self._names = itertools.count(1)
        for _ in range(ready):
            self._add(pod(self._next(), labels=labels))
        for _ in range(pending):
            self._add(pod(self._next(), node=None, phase="Pending", labels=labels))
        self.replicas = len(self.pods)

    def _next(self) -> str:
        return f"w-{next(self._names)}"

    def _add(self, p: dict[str, Any]) -> None:
        self.pods[p["metadata"]["name"]] = p

    def retire(self, *names: str) -> None:
        for n in names:
            self.retired[n] = self.probe_lag

    def _check(self, op: str) -> None:
        self.calls.append((op, None))
        if op in self.fail:
            self.errors += 1
            raise self.fail[op]

    def _reconcile(self) -> None:
        live = [
            p
            for p in self.pods.values()
            if "deletionTimestamp" not in p["metadata"] and owned_by(p, "workers")  # the ReplicaSet's own
        ]
        while len(live) < self.replicas:
            p = pod(self._next(), node=None, phase="Pending", labels=self.labels)
            self._add(p)
            live.append(p)
        excess = len(live) - self.replicas
        if excess > 0:

            def key(p):
                cost = int(p["metadata"]["annotations"].get(DELETION_COST, "0")) if self.honour_cost else 0
                return (deletion_rank(p), cost, -p["metadata"]["serial"])

            victims = [self.pods[n] for n in self.pick] if self.pick else sorted(live, key=key)
            for p in victims[:excess]:
                del self.pods[p["metadata"]["name"]]

    # KubeApi surface
    async def get_scale(self, ns, name):
        self._check("get_scale")
        return {"spec": {"replicas": self.replicas}}

    async def patch_scale(self, ns, name, replicas):
        self._check("patch_scale")
        self.calls[-1] = ("patch_scale", replicas)
        self.replicas = replicas
        self._reconcile()
        return {}

    async def list_pods(self, ns, selector):
        self._check("list_pods")
        for n in list(self.retired):
            self.retired[n] -= 1
            if self.retired[n] <= 0 and n in self.pods:
                self.pods[n]["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
        # like the apiserver: only pods whose labels match the selector
        return [dict(p) for p in self.pods.values() if selector_matches(selector, p["metadata"]["labels"])]

    async def annotate_pod(self, ns, name, annotations):
        self._check("annotate_pod")
        if name not in self.pods:
            raise KubeApiError("PATCH", name, 404, "NotFound")
        self.pods[name]["metadata"]["annotations"].update(annotations)
        return {}

    async def delete_pod(self, ns, name):
        self._check("delete_pod")
        self.calls[-1] = ("delete_pod", name)
        gone = self.pods.pop(name, None) is not None
        self._reconcile()
        return gone

    async def create_event(self, ns, event):
        self._check("create_event")
        self.events.append(event)
        return event

    async def can_i(self, ns, verb, group, resource, sub="", name=""):
        self._check("can_i")
        return (verb, resource, sub) not in self.denied, ""

    async def get_deployment(self, ns, name):
        self._check("get_deployment")
        if name != "workers":
            raise KubeApiError("GET", name, 404, "NotFound")
        return {
            "metadata": {"name": name, "uid": "u"},
            "spec": {"template": {"metadata": {"labels": {"app": "dask-worker"}}}},
        }

    async def close(self):
        pass


# the in-memory cluster answers lists, not watches: these tests drive the list-per-look path (the watch
# cache's own tests: test_pod_watch.py; both on the real control plane: tests/kube/test_pod_watch_real.py)
TIMEOUTS = {"not_ready_timeout": 5.0, "settle_timeout": 5.0, "poll_interval": 0.001, "watch": False}


def backend(cluster: FakeCluster, **kw: Any) -> KubernetesBackend:
    kw = {**TIMEOUTS, **kw}
    return KubernetesBackend("ns", "workers", "app=dask-worker", api=cluster, **kw)  # type: ignore[arg-type]


def go(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def scale_writes(cluster: FakeCluster) -> list[int]:
    return [arg for op, arg in cluster.calls if op == "patch_scale"]


def test_retired_pods_are_exactly_the_ones_removed_on_a_cluster_that_ignores_cost():
    cluster = FakeCluster(ready=5, probe_lag=3)
    cluster.retire("w-1", "w-2")  # oldest: a newest-first ReplicaSet would never pick them on its own
    b = backend(cluster)
    report = go(b.remove(["w-1", "w-2"]))
    assert (report.removed, report.wrong, report.corrected) == (("w-1", "w-2"), (), ())
    assert sorted(cluster.pods) == ["w-3", "w-4", "w-5"]
    assert scale_writes(cluster) == [3]  # one write, lowered by len(names)
    assert not any(op == "delete_pod" for op, _ in cluster.calls)


def test_the_low_deletion_cost_is_set_on_exactly_the_named_pods():
    cluster = FakeCluster(ready=3)
    cluster.retire("w-2")
    annotated: dict[str, str] = {}
    original = cluster.annotate_pod

    async def spy(ns, name, annotations):
        annotated[name] = annotations[DELETION_COST]
        return await original(ns, name, annotations)

    cluster.annotate_pod = spy  # type: ignore[method-assign]
    go(backend(cluster).remove(["w-2"]))
    assert annotated == {"w-2": LOWEST_COST}


def test_with_cost_honoured_ready_pods_still_go_right_when_readiness_never_drops():
    cluster = FakeCluster(ready=4, honour_cost=True)  # no retire(): the probe never fails
    report = go(backend(cluster, not_ready_timeout=0.05).remove(["w-1"]))
    assert report.wrong == ()
    assert sorted(cluster.pods) == ["w-2", "w-3", "w-4"]


def test_a_pod_that_never_turns_notready_is_deleted_directly_before_the_single_scale_write():
    cluster = FakeCluster(ready=4)  # 1.20 ranking, probe never fails: the ReplicaSet would take w-4
    report = go(backend(cluster, not_ready_timeout=0.05).remove(["w-1"]))
    assert report.wrong == ()
    assert sorted(cluster.pods) == ["w-2", "w-3", "w-4"]  # the replacement went, no data holder did
    assert scale_writes(cluster) == [3]
    assert ("delete_pod", "w-1") in cluster.calls


def test_cancelling_pending_pods_among_other_pending_pods():
    cluster = FakeCluster(ready=2, pending=3)  # w-3, w-4, w-5 pending
    b = backend(cluster)
    report = go(b.remove(["w-3"]))  # the newest-first ReplicaSet would take w-5
    assert "w-3" not in cluster.pods and {"w-1", "w-2"} <= set(cluster.pods)
    assert report.wrong == () and scale_writes(cluster) == [4]
    assert b.counters.direct_deletes == 1


def test_a_wrong_pick_is_corrected_reported_and_recorded():
    cluster = FakeCluster(ready=4)
    cluster.retire("w-1")
    cluster.pick = ["w-3"]  # a ReplicaSet that does its own thing
    b = backend(cluster)
    report = go(b.remove(["w-1"]))
    assert (report.wrong, report.corrected) == (("w-3",), ("w-1",))
    assert "w-1" not in cluster.pods
    assert (b.counters.wrong_picks, b.counters.corrections) == (1, 1)
    assert [e["reason"] for e in cluster.events] == ["WrongPodRemoved"]


def test_an_outage_before_the_write_changes_nothing():
    cluster = FakeCluster(ready=3)
    cluster.fail["list_pods"] = KubeApiError("GET", "pods", 503, "ServiceUnavailable")
    with pytest.raises(BackendError):
        go(backend(cluster).remove(["w-1"]))
    assert scale_writes(cluster) == [] and len(cluster.pods) == 3


def test_an_outage_after_the_write_is_not_raised_so_it_is_never_repeated():
    cluster = FakeCluster(ready=3)
    cluster.retire("w-1")
    b = backend(cluster)

    original = cluster.patch_scale

    async def write_then_outage(ns, name, replicas):
        result = await original(ns, name, replicas)
        cluster.fail["list_pods"] = KubeApiError("GET", "pods", 599)
        return result

    cluster.patch_scale = write_then_outage  # type: ignore[method-assign]
    report = go(b.remove(["w-1"]))
    assert report.removed == ("w-1",) and scale_writes(cluster) == [2]


def test_scale_up_never_lowers_the_deployment():
    cluster = FakeCluster(ready=3)
    b = backend(cluster)
    go(b.scale_up(2))
    assert scale_writes(cluster) == []
    go(b.scale_up(5))
    assert scale_writes(cluster) == [5] and cluster.replicas == 5


def test_observe_maps_phases_and_remembers_readiness():
    cluster = FakeCluster(ready=2, pending=1)
    cluster.pods["w-2"]["status"]["conditions"][0]["status"] = "False"  # starting, never Ready
    b = backend(cluster)
    obs = go(b.observe())
    assert obs.requested == 3
    assert obs.units == (  # in the ReplicaSet's deletion order: Pending, Running NotReady, Ready
        Unit("w-3", Phase.PENDING),  # unscheduled: no node yet
        Unit("w-2", Phase.STARTING, node="n1"),
        Unit("w-1", Phase.RUNNING, True, "n1"),
    )

    async def twice():
        await b.observe()
        cluster.pods["w-1"]["status"]["conditions"][0]["status"] = "False"  # retired: probe fails now
        return await b.observe()

    assert {u.name: u for u in go(twice()).units}["w-1"] == Unit("w-1", Phase.RUNNING, False, "n1")


def test_start_names_every_missing_permission():
    cluster = FakeCluster()
    cluster.denied = {("get", "deployments", "scale"), ("patch", "deployments", "scale")}
    with pytest.raises(BackendUnavailable) as err:
        go(backend(cluster).start())
    assert str(err.value) == (
        "RBAC: this service account may not get deployments/scale workers; patch deployments/scale workers "
        "in namespace ns"
    )


def test_start_reports_a_missing_deployment_and_a_wrong_selector():
    cluster = FakeCluster()
    b = KubernetesBackend("ns", "nope", "app=dask-worker", api=cluster, **TIMEOUTS)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable, match="Deployment ns/nope not found"):
        go(b.start())
    b = KubernetesBackend("ns", "workers", "app=other", api=cluster, **TIMEOUTS)  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable, match="does not match the pod template labels"):
        go(b.start())
    go(backend(cluster).start())  # and the right one starts


def test_start_reports_an_unreachable_api():
    cluster = FakeCluster()
    cluster.fail["can_i"] = KubeApiError("POST", "ssar", 599, "", "Connection refused")
    with pytest.raises(BackendUnavailable, match=r"unusable: .*no answer"):
        go(backend(cluster).start())


def test_start_without_a_token(tmp_path):
    b = KubernetesBackend("ns", "workers", "app=x", service_account_dir=str(tmp_path), **TIMEOUTS)
    with pytest.raises(BackendUnavailable, match="no service-account token"):
        go(b.start())


def test_start_outside_a_cluster_names_the_missing_host(tmp_path, monkeypatch):
    """KUBERNETES_SERVICE_HOST is checked in one place, with one error type."""
    (tmp_path / "token").write_text("t")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    b = KubernetesBackend("ns", "workers", "app=x", service_account_dir=str(tmp_path), **TIMEOUTS)
    with pytest.raises(BackendUnavailable, match="KUBERNETES_SERVICE_HOST is not set"):
        go(b.start())


def test_record_is_best_effort():
    cluster = FakeCluster()
    b = backend(cluster)
    go(b.record("ScaleUp", "to 3"))
    cluster.fail["create_event"] = KubeApiError("POST", "events", 403, "Forbidden")
    go(b.record("ScaleUp", "to 4"))  # not raised
    assert [e["message"] for e in cluster.events] == ["to 3"]
    assert b.counters.event_errors == 1


def test_a_named_pod_already_gone_does_not_lower_scale_for_it():
    cluster = FakeCluster(ready=4)
    cluster.retire("w-1")
    del cluster.pods["w-2"]  # evicted meanwhile ...
    cluster._reconcile()  # ... and the ReplicaSet already made a replacement (w-5)
    report = go(backend(cluster).remove(["w-1", "w-2"]))
    assert report.removed == ("w-1", "w-2") and report.wrong == ()
    assert scale_writes(cluster) == [3]  # lowered for w-1 only: the replacement w-5 is not taken blindly
    assert sorted(cluster.pods) == ["w-3", "w-4", "w-5"]


# the stack's labels (infra/k8s/dask_objects.py): headroom placeholders differ only in the component
STACK = {
    "app.kubernetes.io/name": "dask",
    "app.kubernetes.io/instance": "ns",
    "app.kubernetes.io/part-of": "x",
}
WORKER_SELECTOR = (
    "app.kubernetes.io/name=dask,app.kubernetes.io/instance=ns,app.kubernetes.io/component=worker"
)


@pytest.mark.parametrize(
    "selector",
    [
        WORKER_SELECTOR,  # the program's: the apiserver leaves placeholders out
        "app.kubernetes.io/name=dask,app.kubernetes.io/instance=ns",  # too broad: ownership leaves them out
    ],
)
def test_headroom_placeholders_are_never_counted_ranked_retired_or_deleted(selector, caplog):
    """Issue 13 §2: placeholder pods share the namespace and the stack's labels. Counted as units they
    would look like pods still Pending (cancelled by the next scale-down, or removed as orphans), and,
    Pending after a burst preempts them, would outrank every retired pod."""
    worker = {**STACK, "app.kubernetes.io/component": "worker", "pod-template-hash": "5d8f"}
    cluster = FakeCluster(ready=3, labels=worker)
    headroom = {**STACK, "app.kubernetes.io/component": "headroom", "pod-template-hash": "77aa"}
    cluster._add(pod("headroom-1", labels=headroom, owner="headroom-77aa"))  # running, by its Deployment
    cluster._add(pod("headroom-2", node=None, phase="Pending", labels=headroom, owner="headroom-77aa"))
    cluster._add(pod("bare", node=None, phase="Pending", labels=dict(headroom), owner=None))  # no owner
    placeholders = ("headroom-1", "headroom-2", "bare")
    b = KubernetesBackend("ns", "workers", selector, api=cluster, **TIMEOUTS)  # type: ignore[arg-type]
    obs = go(b.observe())
    assert obs.requested == 3 and sorted(u.name for u in obs.units) == ["w-1", "w-2", "w-3"]
    assert all(u.phase is Phase.RUNNING for u in obs.units)  # nothing Pending to cancel
    cluster.retire("w-1")
    report = go(b.remove(["w-1"]))  # Pending placeholders would outrank it: not waitable, deleted first
    assert (report.removed, report.wrong) == (("w-1",), ()) and scale_writes(cluster) == [2]
    assert not any(op == "delete_pod" for op, _ in cluster.calls), "w-1 went by the scale-down alone"
    # asked by name (never happens: not a unit), a placeholder is "already gone": untouched, scale kept
    report = go(b.remove(["headroom-2"]))
    assert scale_writes(cluster) == [2] and set(placeholders) <= set(cluster.pods)
    assert all(DELETION_COST not in cluster.pods[n]["metadata"]["annotations"] for n in placeholders)
    warned = [r.getMessage() for r in caplog.records if "does not own" in r.getMessage()]
    assert bool(warned) == (selector != WORKER_SELECTOR)
    assert all("bare,headroom-1,headroom-2" in m for m in warned)


def test_a_pod_belongs_to_the_deployment_only_through_its_replicaset():
    assert owned_by(pod("w"), "workers")
    assert not owned_by(pod("w", owner="workers-77aa"), "workers")  # another template's hash
    assert not owned_by(pod("w", owner="workers-headroom-5d8f"), "workers")  # a longer name
    assert not owned_by(pod("w", owner=None), "workers")  # made by hand
    assert not owned_by(pod("w", labels={"app": "dask-worker"}), "workers")  # no template hash
    job = pod("w")
    job["metadata"]["ownerReferences"][0]["kind"] = "Job"
    assert not owned_by(job, "workers")


def test_nothing_is_written_when_every_named_pod_is_gone():
    cluster = FakeCluster(ready=2)
    report = go(backend(cluster).remove(["w-9"]))
    assert report.removed == ("w-9",) and scale_writes(cluster) == []


def test_the_permissions_checked_at_start_are_granted_by_the_pulumi_role():
    """start() must not demand more than the Role infra/ creates, or every real install would fail."""
    from infra.k8s.rbac import role_rules

    rules = role_rules("workers")
    for verb, group, resource, sub, name in required_permissions("workers"):
        full = f"{resource}/{sub}" if sub else resource
        assert any(
            group in r["apiGroups"]
            and full in r["resources"]
            and verb in r["verbs"]
            and (not r.get("resourceNames") or name in r["resourceNames"])
            for r in rules
        ), (verb, group, full, name)


# -- scale-up while a removal is in flight ----------------------------------------------------------


def test_a_scale_up_during_the_removal_wait_is_not_undone_by_its_write():
    """The removal waits for NotReady (up to 45 s in production): a scale-up meanwhile must land at once
    and the removal's single write must lower the count as it is then, not as it was before the wait."""
    cluster = FakeCluster(ready=3)
    b = backend(cluster, not_ready_timeout=30.0)

    async def scenario():
        removal = asyncio.create_task(b.remove(["w-1"]))
        while not any(op == "list_pods" for op, _ in cluster.calls):
            await asyncio.sleep(0)  # the removal is now waiting for w-1 to turn NotReady
        await b.scale_up(5)  # 4 wanted + w-1, still counted while its removal runs
        assert not removal.done() and cluster.replicas == 5
        cluster.retire("w-1")
        return await removal

    report = go(scenario())
    assert report.removed == ("w-1",) and report.wrong == ()
    assert scale_writes(cluster) == [5, 4] and cluster.replicas == 4
    assert "w-1" not in cluster.pods and len(cluster.pods) == 4


@pytest.mark.parametrize("during", ["write", "verify"])
def test_a_scale_up_racing_the_removal_write_is_discounted_once(during):
    """`n` counts the unit being removed; if its decrement lands first (the scale-up waited for the
    write's lock, or came after it), the backend asks for one fewer: never the removed unit again."""
    cluster = FakeCluster(ready=3)
    cluster.retire("w-1")
    b = backend(cluster)
    gate = asyncio.Event()
    at_gate = asyncio.Event()
    patch, list_pods = cluster.patch_scale, cluster.list_pods

    async def slow_decrement(ns, name, replicas):
        if during == "write" and replicas < cluster.replicas:
            at_gate.set()
            await gate.wait()
        return await patch(ns, name, replicas)

    async def slow_verify(ns, selector):
        if during == "verify" and scale_writes(cluster):
            at_gate.set()
            await gate.wait()
        return await list_pods(ns, selector)

    cluster.patch_scale = slow_decrement  # type: ignore[method-assign]
    cluster.list_pods = slow_verify  # type: ignore[method-assign]

    async def scenario():
        removal = asyncio.create_task(b.remove(["w-1"]))
        await at_gate.wait()
        up = asyncio.create_task(b.scale_up(5))  # 4 wanted + w-1, whose removal is unfinished
        for _ in range(5):
            await asyncio.sleep(0)  # "write": the scale-up now waits for the lock the write holds
        gate.set()
        await up
        return await removal

    report = go(scenario())
    assert report.removed == ("w-1",) and report.wrong == () and report.corrected == ()
    assert scale_writes(cluster) == [2, 4] and cluster.replicas == 4
    assert "w-1" not in cluster.pods and len(cluster.pods) == 4


# -- the departures record the executor lends (backends/departures.py) ----------------------------


def lent(b: KubernetesBackend, *names: str) -> Departures:
    """The executor's record, lent to `b` as ScaleDownExecutor does, with `names` handed to a removal."""
    record = Departures()
    b.departures = record
    record.begin(names, Stage.READY, Reason.RETIRE)
    record.transition(names, Stage.REMOVING)
    return record


def test_a_removal_lowers_the_executors_records_at_its_write_and_leaves_their_end_to_it():
    cluster = FakeCluster(ready=3)
    cluster.retire("w-1")
    b = backend(cluster)
    record = lent(b, "w-1")
    at_write = []
    patch = cluster.patch_scale

    async def write(ns, name, replicas):
        at_write.append(record.get("w-1").stage)
        return await patch(ns, name, replicas)

    cluster.patch_scale = write  # type: ignore[method-assign]
    report = go(b.remove(["w-1"]))
    assert report.removed == ("w-1",) and scale_writes(cluster) == [2]
    assert at_write == [Stage.REMOVING]
    assert record.get("w-1").stage is Stage.LOWERED and len(record) == 1, "the executor ends it, not b"


def test_a_removal_on_its_own_keeps_records_only_for_the_call():
    cluster = FakeCluster(ready=3)
    cluster.retire("w-1")
    b = backend(cluster)
    at_write = []
    patch = cluster.patch_scale

    async def write(ns, name, replicas):
        d = b.departures.get("w-1")
        at_write.append((d.stage, d.reason))
        return await patch(ns, name, replicas)

    cluster.patch_scale = write  # type: ignore[method-assign]
    go(b.remove(["w-1"]))
    assert at_write == [(Stage.REMOVING, Reason.REMOVE)] and len(b.departures) == 0


def test_observe_reads_the_count_last_so_the_record_matches_it():
    """A decrement written while observe lists the pods is in the count observe returns, and its units are
    LOWERED by then: the count minus the units the record still counts is the workers that stay."""
    cluster = FakeCluster(ready=3)
    cluster.retire("w-1")
    b = backend(cluster)
    record = lent(b, "w-1")
    list_pods = cluster.list_pods

    async def scenario():
        gate, listing = asyncio.Event(), asyncio.Event()

        async def gated(ns, selector):
            if not listing.is_set():  # observe's listing waits; the removal's pass
                listing.set()
                await gate.wait()
            return await list_pods(ns, selector)

        cluster.list_pods = gated  # type: ignore[method-assign]
        look = asyncio.create_task(b.observe())
        await listing.wait()
        report = await b.remove(["w-1"])
        gate.set()
        return report, await look

    report, obs = go(scenario())
    assert report.removed == ("w-1",) and scale_writes(cluster) == [2]
    assert obs.requested == 2 and record.get("w-1").stage is Stage.LOWERED
    assert obs.requested - len(record.names(*COUNTED)) == 2


def test_the_backend_cannot_set_a_stage_itself():
    cluster = FakeCluster(ready=2)
    b = backend(cluster)
    record = lent(b, "w-1")
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        b.departures.get("w-1").stage = Stage.GONE  # type: ignore[misc]
    assert record.get("w-1").stage is Stage.REMOVING
