"""Worker pods pack onto nodes already running workers of the stack (issue 13 §1), as the real 1.20
kube-scheduler places the program's own worker Deployment - and, as the baseline, spread without the
program's pod affinity (the default scoring prefers the least allocated node)."""

from __future__ import annotations

import collections

import pytest

from testbed.dask.kube_fixtures import dask_layer
from testbed.kube import stack_apply
from testbed.kube.control_plane import wait_for
from testbed.kube.nodes import NodeSpec

pytestmark = pytest.mark.kube

SLEEPER = {"command": ["sleep", "3600"], "readiness": {"exec": {"command": ["true"]}, "periodSeconds": 1}}


@pytest.mark.parametrize("packed", [True, False], ids=["program", "without-pod-affinity"])
def test_worker_pods_fill_one_node_before_the_next(kube, namespace, kubelet_factory, packed):
    layer = dask_layer(namespace)
    path, dep = layer.worker_deployment(**SLEEPER)
    template = dep["spec"]["template"]["spec"]
    assert "podAffinity" in template["affinity"]  # what the program ships
    if not packed:
        del template["affinity"]["podAffinity"]
    # three worker nodes with room for 6 workers each (1 CPU / 2Gi), so nothing but scoring decides
    kubelet_factory(
        [NodeSpec.pool(f"w{i}", "workers", worker=True, cpu="8", memory="32Gi") for i in range(3)]
    )
    rest = kube.rest()
    for p, obj in [*layer.rbac(), *layer.supporting(), (path, dep)]:
        stack_apply.post(rest, obj, p)
    for n in range(1, 6):  # one at a time, as a scale-up under a trickle of work would add them
        rest.patch(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/dask-worker/scale", {"spec": {"replicas": n}}
        )
        wait_for(
            lambda n=n: (
                sum(
                    1 for p in rest.items(f"/api/v1/namespaces/{namespace}/pods") if p["spec"].get("nodeName")
                )
                == n
            ),
            60,
            message=f"{n} worker pods scheduled",
        )
    per_node = collections.Counter(
        p["spec"]["nodeName"] for p in rest.items(f"/api/v1/namespaces/{namespace}/pods")
    )
    print(
        f"\nworker pods per node ({'program' if packed else 'no pod affinity'}): {sorted(per_node.values())}"
    )
    if packed:
        assert sorted(per_node.values()) == [5]  # one node holds them all: the others stay free
    else:
        assert len(per_node) > 1  # the default scoring spreads them: the affinity is what packs
