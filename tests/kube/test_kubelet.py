"""The kubelet harness: pods scheduled by the real kube-scheduler become real local processes."""

from __future__ import annotations

import urllib.request

import pytest

from testbed.kube.control_plane import wait_for
from testbed.kube.kubelet import pod_ready
from testbed.kube.nodes import NodeSpec

pytestmark = pytest.mark.kube

HTTP_SERVER = ["python", "-m", "http.server", "8080", "--bind", "127.0.0.1"]


def deployment(name, replicas, containers, **spec):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers, **spec}},
        },
    }


def http_container(**extra):
    return {
        "name": "web",
        "image": "ignored",
        "command": HTTP_SERVER,
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        **extra,
    }


def pods(kube, ns, **params):
    return kube.rest().items(f"/api/v1/namespaces/{ns}/pods", **params)


def ready_pods(kube, ns, n):
    got = [p for p in pods(kube, ns) if pod_ready(p) and not p["metadata"].get("deletionTimestamp")]
    return got if len(got) == n else None


def test_deployment_pods_become_ready_processes(kube, namespace, kubelet):
    rest = kube.rest()
    rest.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment("web", 2, [http_container()]))
    ready = kubelet.wait_pods(namespace, 2, label_selector="app=web")
    for p in ready:
        assert p["spec"]["nodeName"] in kubelet.node_specs  # bound by the real kube-scheduler
        assert p["status"]["podIP"] == "127.0.0.1"
        port = kubelet.local_port(namespace, p["metadata"]["name"], 8080)
        assert port != 8080
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200
    dep = wait_for(
        lambda: (lambda d: d if d["status"].get("availableReplicas") == 2 else None)(
            rest.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
        ),
        30,
        message="deployment 2/2 available",
    )
    assert dep["status"]["readyReplicas"] == 2
    # Scale through the /scale subresource with a merge patch, as the preload does.
    rest.patch(f"/apis/apps/v1/namespaces/{namespace}/deployments/web/scale", {"spec": {"replicas": 3}})
    assert len(kubelet.wait_pods(namespace, 3, label_selector="app=web")) == 3


@pytest.mark.kubelet_nodes(
    NodeSpec.pool("sys-a", "system"),
    NodeSpec.pool("wrk-a", "workers", worker=True),
)
def test_labels_taints_and_selectors_steer_scheduling(kube, namespace, kubelet):
    rest = kube.rest()
    tol = [{"key": "adaptive-dask/dask-worker", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    rest.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        deployment(
            "w", 1, [http_container()], tolerations=tol, nodeSelector={"adaptive-dask/pool": "workers"}
        ),
    )
    rest.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment("s", 1, [http_container()]))
    wait_for(lambda: ready_pods(kube, namespace, 2), 60, message="2 ready pods")
    nodes = {p["metadata"]["labels"]["app"]: p["spec"]["nodeName"] for p in pods(kube, namespace)}
    assert nodes == {"w": "wrk-a", "s": "sys-a"}  # the untolerating pod never lands on the tainted node
    node = rest.get("/api/v1/nodes/wrk-a")
    assert node["status"]["capacity"]["cpu"] == "4"
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


@pytest.mark.parametrize(
    "kubelet", [[NodeSpec("param-a", cpu="2"), NodeSpec("param-b", pods=3)]], indirect=True
)
def test_kubelet_fixture_takes_node_specs_by_indirect_parametrisation(kube, kubelet):
    assert set(kubelet.node_specs) == {"param-a", "param-b"}
    node = kube.rest().get("/api/v1/nodes/param-b")
    assert node["status"]["allocatable"]["pods"] == "3"
    assert not node["spec"].get("taints")  # the admission-added not-ready taint was lifted
