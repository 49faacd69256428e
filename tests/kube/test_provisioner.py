"""The node provisioner: Unschedulable pods grow a node group, empty nodes go after a delay — the
pods → nodes layer, so tests can run Dask → pods → nodes together."""

from __future__ import annotations

import pytest

from tests.kube.control_plane import wait_for
from tests.kube.kubelet import pod_ready
from tests.kube.nodes import NodeGroup, NodeSpec

pytestmark = pytest.mark.kube


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
