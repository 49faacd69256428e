"""Real Dask in pods: a `dask scheduler` pod and `dask worker` pods that find it through Service DNS,
named after their pods, computing for a client in the test process."""

from __future__ import annotations

import pytest

from testbed.kube.control_plane import wait_for
from testbed.kube.kubelet import pod_ready

pytestmark = pytest.mark.kube

POD_NAME = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
WORKER_TOLERATION = {
    "key": "adaptive-dask/dask-worker",
    "operator": "Equal",
    "value": "true",
    "effect": "NoSchedule",
}


def scheduler_objects():
    labels = {"app": "dask", "component": "scheduler"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "dask-scheduler"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"adaptive-dask/pool": "system"},
                    "containers": [
                        {
                            "name": "scheduler",
                            "image": "ghcr.io/dask/dask:latest",
                            "command": ["dask", "scheduler"],
                            "args": ["--port", "8786", "--dashboard-address", ":8787"],
                            "ports": [
                                {"name": "comm", "containerPort": 8786},
                                {"name": "dashboard", "containerPort": 8787},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/health", "port": "dashboard"},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "dask-scheduler"},
        "spec": {
            "selector": labels,
            "ports": [
                {"name": "comm", "port": 8786, "targetPort": "comm"},
                {"name": "dashboard", "port": 8787, "targetPort": "dashboard"},
            ],
        },
    }
    return deployment, service


def worker_deployment(namespace, replicas):
    labels = {"app": "dask", "component": "worker"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "dask-worker"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"adaptive-dask/pool": "workers"},
                    "tolerations": [WORKER_TOLERATION],
                    "terminationGracePeriodSeconds": 10,
                    "containers": [
                        {
                            "name": "worker",
                            "image": "ghcr.io/dask/dask:latest",
                            "command": ["dask", "worker"],
                            "args": [
                                f"tcp://dask-scheduler.{namespace}.svc.cluster.local:8786",
                                "--name",
                                "$(POD_NAME)",
                                "--nthreads",
                                "1",
                                "--no-nanny",
                                "--dashboard-address",
                                ":8788",
                            ],
                            "env": [POD_NAME],
                            "ports": [{"name": "dashboard", "containerPort": 8788}],
                            "readinessProbe": {
                                "httpGet": {"path": "/health", "port": 8788},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def test_scheduler_and_workers_connect_through_service_dns(kube, namespace, kubelet):
    from distributed import Client

    rest = kube.rest()
    deployment, service = scheduler_objects()
    # Workers first: until the Service exists their scheduler address does not resolve, so their start
    # is retried (CreateContainerConfigError); once it exists, the forwarder lets them connect as soon
    # as the scheduler pod is Ready, as a ClusterIP would.
    rest.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", worker_deployment(namespace, 2))

    def waiting_for_dns():
        return any(
            "does not resolve" in (c.waiting_message or "") for r in kubelet.runners() for c in r.containers
        )

    wait_for(waiting_for_dns, 60, message="worker pods waiting for the Service name to resolve")
    rest.post(f"/api/v1/namespaces/{namespace}/services", service)
    rest.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment)

    def ready_workers():
        pods = rest.items(f"/api/v1/namespaces/{namespace}/pods", labelSelector="component=worker")
        return pods if len(pods) == 2 and all(pod_ready(p) for p in pods) else None

    worker_pods = wait_for(ready_workers, 90, message="2 ready worker pods")
    pod_names = {p["metadata"]["name"] for p in worker_pods}
    assert all(
        kubelet.node_specs[p["spec"]["nodeName"]].labels["adaptive-dask/pool"] == "workers"
        for p in worker_pods
    )

    def ready_scheduler():
        pods = rest.items(f"/api/v1/namespaces/{namespace}/pods", labelSelector="component=scheduler")
        return pods if len(pods) == 1 and pod_ready(pods[0]) else None

    # Ready workers do not imply a Ready scheduler; until it is, the Service has no endpoint and a
    # connection is dropped at once, which distributed's handshake does not retry.
    wait_for(ready_scheduler, 90, message="a ready scheduler pod")
    address = kubelet.service_address(namespace, "dask-scheduler", 8786)
    with Client(f"tcp://{address}", timeout=30) as client:
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 2, 60, message="2 workers registered")
        names = {w["name"] for w in client.scheduler_info()["workers"].values()}
        assert names == pod_names  # --name $(POD_NAME): the worker↔pod mapping the preload relies on
        assert client.submit(lambda x: x + 1, 41).result(timeout=30) == 42

        # Scale down through /scale: the removed pod's worker leaves the scheduler.
        rest.patch(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/dask-worker/scale", {"spec": {"replicas": 1}}
        )
        wait_for(lambda: len(client.scheduler_info()["workers"]) == 1, 60, message="1 worker left")
        live = {
            p["metadata"]["name"]
            for p in rest.items(f"/api/v1/namespaces/{namespace}/pods", labelSelector="component=worker")
            if not p["metadata"].get("deletionTimestamp")
        }
        remaining = {w["name"] for w in client.scheduler_info()["workers"].values()}
        assert remaining <= live
