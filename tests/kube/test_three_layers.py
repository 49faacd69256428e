"""Dask → pods → nodes, together: the dev stack's real objects on the real control plane, the preload
scaling the worker Deployment, kube-scheduler leaving pods Unschedulable, the node provisioner (our
cluster-autoscaler stand-in) adding worker nodes, and all of it shrinking again when the work is done."""

from __future__ import annotations

import json

import pytest

from testbed.dask.kube_driver import client_security
from testbed.kube.control_plane import wait_for
from testbed.kube.nodes import NodeGroup, NodeSpec
from testbed.kube.stack_apply import apply, record_stack

pytestmark = pytest.mark.kube

# Short stabilisation so the test also sees the way down; everything else is the dev stack as committed.
OVERRIDES = {"adaptive-dask:dask": json.dumps({"scaleDownDelay": "5s"})}


def test_work_grows_pods_and_nodes_then_everything_shrinks(kube, namespace, kubelet_factory):
    objs = record_stack("dev", OVERRIDES)
    ns = objs.namespace
    admin = kube.rest()
    if admin.get_or_none(f"/api/v1/namespaces/{ns}"):
        kube.delete_namespace(ns)
        wait_for(lambda: admin.get_or_none(f"/api/v1/namespaces/{ns}") is None, 60, message=f"{ns} gone")
    worker_spec = objs.find("Deployment", "dask-worker")["spec"]["template"]["spec"]
    pool = worker_spec["nodeSelector"]["adaptive-dask/pool"]
    # m6i.large-sized worker nodes (2 vCPU, 8 GiB): one dev worker pod (1780m) per node.
    group = NodeGroup(pool, worker=True, cpu="2", memory="8Gi", min_size=0, max_size=2,
                      scale_up_delay=0.5, scale_down_delay=3.0)  # fmt: skip
    system = NodeSpec.pool("three-layers-system", "system", cpu="4", memory="16Gi")
    k = kubelet_factory([system], namespaces=[ns], node_groups=[group], probe_period_scale=0.2)
    try:
        apply(admin, objs.objects, objs.patches)
        k.wait_pods(ns, 1, label_selector="app.kubernetes.io/component=scheduler", timeout=120)
        assert k.provisioner is not None and k.provisioner.nodes[pool] == []  # nothing runs, no workers

        from distributed import Client

        # the stack's mutual TLS: the client certificate from the stack's client Secret, as a user gets it
        address = f"tls://{k.service_address(ns, 'dask-scheduler', 8786)}"
        with Client(address, security=client_security(kube, ns), timeout=30) as client:
            import time

            futures = client.map(lambda i: time.sleep(1.0) or i, range(40), pure=False)

            def workers_on_new_nodes():
                names = {w["name"] for w in client.scheduler_info()["workers"].values()}
                return names if len(names) >= 2 else None

            names = wait_for(
                workers_on_new_nodes, 180, message=lambda: f"2 workers; kubelet: {k.log_tails(15)}"
            )
            pods = admin.items(
                f"/api/v1/namespaces/{ns}/pods", labelSelector="app.kubernetes.io/component=worker"
            )
            assert names <= {p["metadata"]["name"] for p in pods}  # workers are named after their pods
            running_on = {p["spec"]["nodeName"] for p in pods if p["metadata"]["name"] in names}
            assert running_on <= set(k.provisioner.nodes[pool])  # on the nodes the provisioner added
            # The preload asked for more than the group's maximum: the rest stay Pending, as on EKS.
            assert len(pods) >= len(names)
            assert sum(client.gather(futures)) == sum(range(40))  # nothing lost on the way
        added = [name for _, what, name in k.provisioner.events if what == "add"]
        assert len(added) == 2  # the Unschedulable pods grew the node group to its maximum

        # Work done: the preload scales the Deployment down after its delay, the pods go, then the nodes.
        wait_for(lambda: k.provisioner.nodes[pool] == [], 180, message="the worker node group back at 0")
        dep = admin.get(f"/apis/apps/v1/namespaces/{ns}/deployments/dask-worker")
        assert dep["spec"]["replicas"] == 0
        removed = [name for _, what, name in k.provisioner.events if what == "remove"]
        assert sorted(removed) == sorted(added)
    finally:
        kube.delete_namespace(ns)
