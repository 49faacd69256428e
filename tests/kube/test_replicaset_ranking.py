"""Which pod the real 1.20 ReplicaSet deletes on scale-down: the rules our design relies on, and the
one it cannot rely on here (pod-deletion-cost, honoured only from 1.21/1.22)."""

from __future__ import annotations

import time

import pytest

from testbed.kube.control_plane import wait_for
from testbed.kube.kubelet import pod_ready
from testbed.kube.nodes import NodeSpec

pytestmark = pytest.mark.kube

# Ready unless a flag file named after the pod exists: lets a test make one chosen pod NotReady.
FLAG_PROBE = {
    "exec": {"command": ["sh", "-c", 'test ! -e "$FLAG_DIR/$POD_NAME"']},
    "periodSeconds": 1,
    "failureThreshold": 1,
}
COST = "controller.kubernetes.io/pod-deletion-cost"


def sleeper_deployment(flag_dir):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "r"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "r"}},
            "template": {
                "metadata": {"labels": {"app": "r"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "c",
                            "image": "ignored",
                            "command": ["sleep", "3600"],
                            "env": [
                                {"name": "FLAG_DIR", "value": str(flag_dir)},
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                            ],
                            "readinessProbe": FLAG_PROBE,
                        }
                    ],
                },
            },
        },
    }


def live(rest, ns):
    return [
        p for p in rest.items(f"/api/v1/namespaces/{ns}/pods") if not p["metadata"].get("deletionTimestamp")
    ]


def grow_one_by_one(kube, ns, flag_dir, n):
    """Create pods one at a time (distinct creation and ready times), oldest first in the result."""
    rest = kube.rest()
    rest.post(f"/apis/apps/v1/namespaces/{ns}/deployments", sleeper_deployment(flag_dir))
    names: list[str] = []
    for i in range(1, n + 1):
        if i > 1:
            rest.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/r/scale", {"spec": {"replicas": i}})

        def ready_set(i=i):
            pods = live(rest, ns)
            return pods if len(pods) == i and all(pod_ready(p) for p in pods) else None

        pods = wait_for(ready_set, 60, message=f"{i} ready pods")
        (new,) = [p["metadata"]["name"] for p in pods if p["metadata"]["name"] not in names]
        names.append(new)
        time.sleep(1.1)  # creationTimestamp and Ready transition times have 1 s resolution
    return names


def scale_down_victim(kube, ns, to):
    rest = kube.rest()
    before = {p["metadata"]["name"] for p in live(rest, ns)}
    rest.patch(f"/apis/apps/v1/namespaces/{ns}/deployments/r/scale", {"spec": {"replicas": to}})
    after = wait_for(
        lambda: (lambda s: s if len(s) == to else None)({p["metadata"]["name"] for p in live(rest, ns)}),
        30,
        message=f"{to} pods left",
    )
    return before - after


@pytest.mark.kubelet_nodes(NodeSpec.pool("rank-n1", "system"))
def test_a_notready_pod_is_deleted_before_ready_ones(kube, namespace, kubelet, tmp_path):
    oldest, _middle, _newest = grow_one_by_one(kube, namespace, tmp_path, 3)
    # Without intervention the newest would go; make the OLDEST NotReady and it must be the victim.
    (tmp_path / oldest).touch()
    rest = kube.rest()
    wait_for(
        lambda: not pod_ready(rest.get(f"/api/v1/namespaces/{namespace}/pods/{oldest}")),
        30,
        message=f"{oldest} NotReady",
    )
    assert scale_down_victim(kube, namespace, 2) == {oldest}


@pytest.mark.kubelet_nodes(NodeSpec.pool("cost-n1", "system"))
def test_pod_deletion_cost_is_not_honoured_on_1_20(kube, namespace, kubelet, tmp_path):
    oldest, middle, newest = grow_one_by_one(kube, namespace, tmp_path, 3)
    rest = kube.rest()
    # On 1.22+ (EKS) the lowest cost goes first: that would be `oldest`. Stock 1.20.2 ignores the
    # annotation (the apiserver stores it) and removes the newest pod instead.
    for name, cost in ((oldest, "-1000"), (middle, "0"), (newest, "1000")):
        rest.patch(f"/api/v1/namespaces/{namespace}/pods/{name}", {"metadata": {"annotations": {COST: cost}}})
    assert (
        rest.get(f"/api/v1/namespaces/{namespace}/pods/{oldest}")["metadata"]["annotations"][COST] == "-1000"
    )
    assert scale_down_victim(kube, namespace, 2) == {newest}
