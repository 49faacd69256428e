"""The node provisioner: Unschedulable pods grow a node group, empty nodes go after a delay — the
pods → nodes layer, so tests can run Dask → pods → nodes together."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from testbed.kube.control_plane import wait_for
from testbed.kube.kubelet import pod_ready
from testbed.kube.nodes import NodeGroup, NodeSpec
from testbed.kube.provisioner import Launch, NodeProvisioner, expendable, node_count_steps, node_seconds
from testbed.kube.rest import ApiError


@pytest.mark.kube
def test_pending_pods_grow_the_group_and_empty_nodes_shrink_it(kube, namespace, kubelet_factory):
    group = NodeGroup("workers", worker=True, cpu="2", memory="4Gi", max_size=3, scale_up_delay=0.5,
                      scale_down_delay=2.0)  # fmt: skip
    k = kubelet_factory([NodeSpec.pool("prov-sys", "system")], node_groups=[group])
    rest = kube.rest()
    rest.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        {
            "metadata": {"name": "w"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "w"}},
                "template": {
                    "metadata": {"labels": {"app": "w"}},
                    "spec": {
                        "nodeSelector": {"adaptive-dask/pool": "workers"},
                        "tolerations": [{"key": "adaptive-dask/dask-worker", "operator": "Exists"}],
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{
                            "name": "c", "image": "x", "command": ["sleep", "3600"],
                            "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}},
                        }],
                    },
                },
            },
        },
    )  # fmt: skip

    def two_ready():
        pods = rest.items(f"/api/v1/namespaces/{namespace}/pods")
        return pods if len(pods) == 2 and all(pod_ready(p) for p in pods) else None

    pods = wait_for(two_ready, 90, message="2 worker pods ready on provisioned nodes")
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert len(nodes) == 2  # 1.5 CPU each on 2-CPU nodes: one pod per node
    assert nodes <= set(k.provisioner.nodes["workers"])
    assert [e[1] for e in k.provisioner.events] == ["add", "add"]

    rest.patch(f"/apis/apps/v1/namespaces/{namespace}/deployments/w/scale", {"spec": {"replicas": 0}})
    wait_for(lambda: not k.provisioner.nodes["workers"], 60, message="empty worker nodes removed")
    assert all(rest.get_or_none(f"/api/v1/nodes/{n}") is None for n in nodes)
    assert sorted(e[1] for e in k.provisioner.events) == ["add", "add", "remove", "remove"]


def test_the_bill_counts_each_node_from_launch_to_removal():
    launches = [Launch("a", "w", 10.0, 12.0, 30.0), Launch("b", "w", 20.0, 25.0, None)]
    assert node_seconds(launches, 0.0, 40.0) == 20.0 + 20.0  # b still billed at the end of the window
    assert node_seconds(launches, 15.0, 25.0) == 10.0 + 5.0  # clipped to the window
    assert node_seconds(launches, 31.0, 19.0) == 0.0
    steps = node_count_steps(launches, 5.0, 40.0)
    assert steps == [(5.0, 0), (10.0, 1), (20.0, 2), (30.0, 1)]
    assert node_count_steps(launches, 21.0, 40.0)[0] == (21.0, 2)  # what was already running


def test_cluster_autoscaler_ignores_pods_below_the_expendable_cutoff():
    def pod(priority):
        return {"spec": {} if priority is None else {"priority": priority}}

    assert expendable(pod(-11)) and not expendable(pod(-10)) and not expendable(pod(-1))
    assert not expendable(pod(None)) and not expendable(pod(0))
    assert expendable(pod(-1), cutoff=0)


def _deployment(name, replicas, priority_class=None):
    spec = {
        "nodeSelector": {"adaptive-dask/pool": "workers"},
        "tolerations": [{"key": "adaptive-dask/dask-worker", "operator": "Exists"}],
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": "x", "command": ["sleep", "3600"],
                        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
    }  # fmt: skip
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


@pytest.mark.kube
def test_a_node_boots_before_it_joins_and_expendable_pods_ask_for_none(kube, namespace, kubelet_factory):
    group = NodeGroup("workers", worker=True, cpu="2", memory="4Gi", max_size=2, scale_up_delay=0.3,
                      scale_down_delay=1.0, boot_delay=2.0)  # fmt: skip
    k = kubelet_factory([NodeSpec.pool("boot-sys", "system")], node_groups=[group])
    rest = kube.rest()
    expendable_class = f"{namespace}-expendable"
    rest.post(
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        {"metadata": {"name": expendable_class}, "value": -20, "preemptionPolicy": "Never"},
    )
    try:
        deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
        rest.post(deployments, _deployment("spare", 1, expendable_class))
        wait_for(
            lambda: any(
                c.get("reason") == "Unschedulable"
                for p in rest.items(f"/api/v1/namespaces/{namespace}/pods")
                for c in p["status"].get("conditions") or []
            ),
            60,
            message="the expendable pod Unschedulable",
        )
        time.sleep(1.5)  # several provisioner steps past scale_up_delay
        assert k.provisioner.launches == []  # below the cutoff: cluster-autoscaler adds nothing for it

        rest.post(deployments, _deployment("w", 1))
        launches = k.provisioner.launches
        launch = wait_for(lambda: launches and launches[0], 30, message="a launch")
        assert k.provisioner.billed() == 1 and k.provisioner.nodes["workers"] == []  # booting, billed
        wait_for(lambda: k.provisioner.nodes["workers"], 30, message="the node joined")
        assert launch.joined is not None and launch.joined - launch.launched >= 2.0
        assert len(k.provisioner.launches) == 1  # a booting node is capacity on its way: not asked twice

        rest.patch(f"{deployments}/w/scale", {"spec": {"replicas": 0}})
        # the expendable pod may now run on the node, but it does not keep it
        wait_for(lambda: not k.provisioner.nodes["workers"], 60, message="the node removed")
        assert launch.removed is not None
        billed = k.provisioner.node_seconds(launch.launched - 5, launch.removed + 5)
        assert billed == pytest.approx(launch.removed - launch.launched)
        assert billed >= 2.0 + 1.0  # the boot is paid, and the unneeded time after the node emptied
    finally:
        rest.delete(f"/apis/scheduling.k8s.io/v1/priorityclasses/{expendable_class}")


def test_pods_that_fit_the_room_of_joined_or_booting_nodes_ask_for_no_new_node():
    group = NodeGroup("w", cpu="4", memory="16Gi", max_size=3, boot_delay=60.0)
    prov = NodeProvisioner(None, [group])  # type: ignore[arg-type]  # no node is added in this test

    def pod(node=None, cpu="1"):
        spec = {"containers": [{"resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}
        return {"spec": {**spec, "nodeName": node} if node else spec, "status": {"phase": "Running"}}

    prov.nodes["w"].append("joined")  # one joined node running one pod: room for 3 more
    bound = [pod("joined")]
    assert prov._unplaced(group, [pod(), pod(), pod()], bound) == []
    four = [pod(), pod(), pod(), pod()]
    assert prov._unplaced(group, four, bound) == [four[3]]
    assert len(prov._unplaced(group, four, [*bound, pod("joined", cpu="3")])) == 4  # no room left
    prov._add(group)  # a node on its way counts whole
    assert prov._unplaced(group, four * 2, bound) == four[3:]  # 3 + 4 placed, one left over
    assert prov.billed() == 1 and prov.nodes["w"] == ["joined"]


class _Rest:
    """Records the provisioner's calls; evictions of pods named in `refuse` get a 429 (a budget)."""

    def __init__(self, refuse=()):
        self.calls = []
        self.refuse = set(refuse)

    def get(self, path):
        return {"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}}

    def patch(self, path, body):
        self.calls.append(("patch", path, body))

    def post(self, path, body):
        self.calls.append(("post", path, body))
        if body["metadata"]["name"] in self.refuse:
            raise ApiError(
                429,
                {"message": "Cannot evict pod as it would violate the pod's disruption budget."},
                "POST",
                path,
            )

    def delete(self, path, body=None):
        self.calls.append(("delete", path, body))


def _bound(node, name, cpu="1", owned=True, evict=None):
    meta = {"name": name, "namespace": "ns"}
    if owned:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "rs", "controller": True}]
    if evict is not None:
        meta["annotations"] = {"cluster-autoscaler.kubernetes.io/safe-to-evict": evict}
    spec = {"nodeName": node, "containers": [{"resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}]}
    return {"metadata": meta, "spec": spec, "status": {"phase": "Running"}}


@pytest.mark.parametrize(
    ("on_a", "on_b", "drained"),
    [
        ([_bound("a", "p1")], [_bound("b", "p2"), _bound("b", "p3")], True),  # 25%, fits on b
        ([_bound("a", "p1", cpu="2")], [_bound("b", "p2", cpu="2")], False),  # 50%: not under it
        ([_bound("a", "p1")], [_bound("b", "p2", cpu="3500m")], False),  # no room for it on b
        ([_bound("a", "p1", owned=False)], [_bound("b", "p2", cpu="2")], False),  # a bare pod stays
        ([_bound("a", "p1", evict="false")], [_bound("b", "p2", cpu="2")], False),  # not evictable
    ],
    ids=["under-used", "at-threshold", "no-room", "bare-pod", "not-evictable"],
)
def test_an_under_used_node_is_drained_when_its_pods_fit_elsewhere(on_a, on_b, drained):
    group = NodeGroup("w", cpu="4", memory="16Gi", scale_down_delay=0.0, scale_down_utilization=0.5)
    kubelet = type("K", (), {"rest": _Rest()})()
    prov = NodeProvisioner(kubelet, [group])  # type: ignore[arg-type]
    for name in ("a", "b"):
        prov.nodes["w"].append(name)
        prov.launches.append(Launch(name, "w", 0.0, joined=0.0))
    # b is at least half used in every case: only a may go
    prov._consider_drain(group, [*on_a, *on_b], now=100.0)
    if drained:
        (taint, evict) = kubelet.rest.calls
        assert taint[:2] == ("patch", "/api/v1/nodes/a")
        assert [t["key"] for t in taint[2]["spec"]["taints"]] == ["k", "ToBeDeletedByClusterAutoscaler"]
        assert evict[:2] == ("post", "/api/v1/namespaces/ns/pods/p1/eviction")
        assert prov.draining == {"a"} and prov.events[-1][1:] == ("drain", "a")
    else:
        assert kubelet.rest.calls == [] and prov.draining == set()


@pytest.mark.parametrize(("since_scale_up", "drained"), [(5.0, False), (10.0, True)])
def test_no_node_is_drained_while_the_group_cools_down_after_a_scale_up(since_scale_up, drained):
    group = NodeGroup(
        "w", cpu="4", memory="16Gi", scale_down_delay=0.0, scale_down_delay_after_add=10.0,
        scale_down_utilization=0.5,
    )  # fmt: skip
    kubelet = type("K", (), {"rest": _Rest()})()
    prov = NodeProvisioner(kubelet, [group])  # type: ignore[arg-type]
    for name in ("a", "b"):
        prov.nodes["w"].append(name)
        prov.launches.append(Launch(name, "w", 0.0, joined=0.0))
    prov.last_scale_up["w"] = 100.0 - since_scale_up
    prov._consider_drain(group, [_bound("a", "p1"), _bound("b", "p2"), _bound("b", "p3")], now=100.0)
    assert (prov.draining == {"a"}) is drained


@pytest.mark.parametrize(("since_scale_up", "removed"), [(1.0, False), (30.0, True)])
def test_an_empty_node_outlives_its_unneeded_time_while_the_group_cools_down(since_scale_up, removed):
    group = NodeGroup("w", scale_down_delay=0.0, scale_down_delay_after_add=20.0)
    gone = []
    kubelet = type("K", (), {"remove_node": lambda self, name: gone.append(name)})()
    prov = NodeProvisioner(kubelet, [group])  # type: ignore[arg-type]
    prov.nodes["w"].append("a")
    prov.launches.append(Launch("a", "w", 0.0, joined=0.0))
    prov.last_scale_up["w"] = time.monotonic() - since_scale_up
    prov.step([])  # no pods at all: "a" is empty, and its unneeded time (0) is over
    assert (gone == ["a"]) is removed
    assert prov.billed() == (0 if removed else 1)


# ------------------------------------------------------------------ fidelity to cluster-autoscaler
# An m6i.xlarge as the repository's facts have it (infra/facts/instance_types.py): allocatable 3920m /
# 14162Mi, DaemonSets 150m / 256Mi, so 3770m / 13906Mi for our pods; the shipped worker at 4 per node
# requests 942m / 3476Mi with a 120 s grace period.
_M6I = {"cpu": "3770m", "memory": "13906Mi", "daemonset_cpu": "150m", "daemonset_memory": "256Mi"}


def _worker(node, name, grace=120, evict=None):
    pod = _bound(node, name, cpu="942m", evict=evict)
    pod["metadata"]["labels"] = {"app": "worker"}
    pod["spec"]["containers"][0]["resources"]["requests"]["memory"] = "3476Mi"
    if grace is not None:
        pod["spec"]["terminationGracePeriodSeconds"] = grace
    return pod


def _pdb(allowed):
    return {
        "metadata": {"name": "workers", "namespace": "ns"},
        "spec": {"selector": {"matchLabels": {"app": "worker"}}},
        "status": {"disruptionsAllowed": allowed},
    }


def _three_nodes(evict=None, grace=120):
    """a: 2 of 4 workers; b and c: 3 of 4 each (above the threshold, one slot free each)."""
    return [
        _worker("a", "a1", grace, evict), _worker("a", "a2", grace),
        *(_worker(n, f"{n}{i}") for n in ("b", "c") for i in range(3)),
    ]  # fmt: skip


def _prov(refuse=(), **group):
    g = NodeGroup("w", **_M6I, scale_down_delay=0.0, scale_down_utilization=0.5, **group)
    kubelet = type("K", (), {"rest": _Rest(refuse)})()
    prov = NodeProvisioner(kubelet, [g])  # type: ignore[arg-type]
    for name in ("a", "b", "c"):
        prov.nodes["w"].append(name)
        prov.launches.append(Launch(name, "w", 0.0, joined=0.0))
    return g, prov


@pytest.mark.parametrize(
    ("case", "group", "pdbs", "evict", "utilization", "drained", "reason"),
    [
        ("daemonsets counted (CA's default)", {}, [], None, "0.5189", False, None),
        ("daemonsets ignored", {"ignore_daemonsets_utilization": True}, [], None, "0.4999", True, None),
        ("budget allows 1 of 2", {"ignore_daemonsets_utilization": True}, [_pdb(1)], None, "0.4999",
         False, "NotEnoughPdb"),
        ("budget allows 2", {"ignore_daemonsets_utilization": True}, [_pdb(2)], None, "0.4999", True, None),
        ("safe-to-evict false", {"ignore_daemonsets_utilization": True}, [], "false", "0.4999", False,
         "NotSafeToEvictAnnotation"),
    ],
)  # fmt: skip
def test_fidelity_table_of_the_scale_down_decision(case, group, pdbs, evict, utilization, drained, reason):
    g, prov = _prov(**group)
    prov._consider_drain(g, _three_nodes(evict), now=100.0, pdbs=pdbs)
    assert f"{prov.utilization['a']:.4f}" == utilization, case
    others = [prov.utilization[n] for n in "bc" if n in prov.utilization]  # looked at after a
    assert all(u > Decimal("0.5") for u in others)  # only a is ever a candidate
    assert (prov.draining == {"a"}) is drained, case
    assert prov.unremovable.reasons.get("a") == reason, case


def test_a_node_found_unremovable_is_rechecked_only_after_the_back_off():
    g, prov = _prov(ignore_daemonsets_utilization=True, unremovable_recheck=7.5)
    pods = _three_nodes()
    prov._consider_drain(g, pods, now=100.0, pdbs=[_pdb(0)])  # blocked by the budget: put aside
    assert prov.unremovable.reasons == {"a": "NotEnoughPdb"} and not prov.draining
    prov._consider_drain(g, pods, now=107.4, pdbs=[_pdb(2)])  # the budget allows it now, but too soon
    assert not prov.draining and not prov.underused_since
    prov._consider_drain(g, pods, now=107.5, pdbs=[_pdb(2)])  # recheck due: drained
    assert prov.draining == {"a"} and not prov.unremovable.reasons


@pytest.mark.parametrize(
    ("pod_grace", "cap", "asked"), [(120, 37.0, 37), (120, 600.0, 120), (None, 600.0, 30), (25, 0.0, 25)]
)
def test_evictions_go_through_the_eviction_api_with_the_grace_capped(pod_grace, cap, asked):
    g, prov = _prov(ignore_daemonsets_utilization=True, max_graceful_termination=cap)
    prov._consider_drain(g, _three_nodes(grace=pod_grace), now=100.0)
    posts = [c for c in prov.kubelet.rest.calls if c[0] == "post"]
    assert [c[1] for c in posts] == [f"/api/v1/namespaces/ns/pods/a{i}/eviction" for i in (1, 2)]
    assert posts[0][2]["kind"] == "Eviction" and posts[0][2]["apiVersion"] == "policy/v1beta1"
    assert posts[0][2]["deleteOptions"]["gracePeriodSeconds"] == asked


def test_a_refused_eviction_is_retried_then_the_drain_fails_and_the_node_is_put_aside():
    g, prov = _prov(ignore_daemonsets_utilization=True, max_pod_eviction_time=6.0, refuse=("a2",))
    prov._consider_drain(g, _three_nodes(), now=100.0)
    assert [e[2] for e in prov.evicted] == ["a1"] and "a" in prov.evicting
    prov._evict_pending("a", 103.0)  # still refused, before the deadline: kept trying
    assert "a" in prov.draining
    prov._evict_pending("a", 106.0)
    assert "a" not in prov.draining and prov.events[-1][1:] == ("drain-failed", "a")
    assert prov.unremovable.reasons == {"a": "EvictionFailed"}
    untaint = prov.kubelet.rest.calls[-1]
    assert untaint[0] == "patch" and [t["key"] for t in untaint[2]["spec"]["taints"]] == ["k"]


def test_candidates_get_the_soft_taint_and_lose_it():
    _, prov = _prov()
    prov._soft_taint({"a", "b"})
    prov._soft_taint({"b"})
    patched = [(c[1], [t["key"] for t in c[2]["spec"]["taints"]]) for c in prov.kubelet.rest.calls]
    soft = "DeletionCandidateOfClusterAutoscaler"
    assert patched == [
        ("/api/v1/nodes/a", ["k", soft]),
        ("/api/v1/nodes/b", ["k", soft]),
        ("/api/v1/nodes/a", ["k"]),
    ]
    assert prov.soft_tainted == {"b"}
