"""`dask.monitoring` on the real 1.20 control plane: the local target's CRD check (`infra.k8s.live.crd_exists`
through a real kubeconfig) before and after the PodMonitor CRD exists, and with a user who may not read CRDs;
the program's dashboard ConfigMap and metrics NetworkPolicy accepted by the API server; and the fact
docs/monitoring.md relies on: 1.20 does not label namespaces with `kubernetes.io/metadata.name`.

The PodMonitor object itself is not created here: this API server (1.20 built with Go 1.19) crashes on
the first custom resource it decodes (its vendored modern-go/reflect2 predates Go 1.18's map iterator;
reflect2 issues #24 and #26), so its fields are checked against the CRD's documented names instead
(tests/infra/k8s/test_monitoring.py)."""

from __future__ import annotations

import contextlib

import pytest

from infra.errors import ConfigError
from infra.k8s import dask_objects as kd
from infra.k8s import monitoring
from infra.k8s import network_policies as np_
from infra.k8s.live import check_local_cluster, crd_exists
from testbed.infra import builders
from testbed.kube.control_plane import wait_for
from testbed.kube.rest import ApiError

pytestmark = pytest.mark.kube

CRD_PATH = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{monitoring.POD_MONITOR_CRD}"


def pod_monitor_crd() -> dict:
    """A stand-in for the Prometheus Operator's CRD: the same group, names and scope, any spec accepted."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": monitoring.POD_MONITOR_CRD},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": "podmonitors", "singular": "podmonitor", "kind": "PodMonitor"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


class Stack:
    """What check_local_cluster reads of the loaded settings."""

    def __init__(self, namespace: str, context: str) -> None:
        raw = {"podMonitor": True, "grafanaDashboard": True, "prometheusNamespaces": ["monitoring"]}
        self.dask = builders.dask({"monitoring": raw}, target="local", namespace=namespace)
        self.target, self.kube_context = "local", context


def test_crd_check_and_the_objects_on_a_real_api_server(kube, namespace, tmp_path, monkeypatch):
    admin = kube.rest()
    kubeconfig = kube.kubeconfig(tmp_path / "admin.yaml", kube.admin_token)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    stack = Stack(namespace, context="t")
    names = kd.Names.of(stack.dask)
    with contextlib.suppress(ApiError):  # a previous run in this session
        admin.delete(CRD_PATH)
    wait_for(lambda: admin.get_or_none(CRD_PATH) is None, 60, message="no PodMonitor CRD")

    # 1. No CRD: the real read says so, and the preview stops naming the key.
    assert crd_exists("t", monitoring.POD_MONITOR_CRD) is False
    with pytest.raises(ConfigError) as error:
        check_local_cluster(stack)
    assert error.value.key == "adaptive-dask:dask.monitoring.podMonitor"
    # a context the kubeconfig does not have is an error too, not a pass
    with pytest.raises(ConfigError, match="cannot check"):
        check_local_cluster(Stack(namespace, context="nope"))

    # 2. A user who may not read CRDs (a ServiceAccount with no role): warned, not refused.
    kube.create_service_account(namespace, "no-rights")
    token = kube.service_account_token(namespace, "no-rights")
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "sa.yaml", token)))
    with pytest.raises(PermissionError):
        crd_exists("t", monitoring.POD_MONITOR_CRD)
    check_local_cluster(stack)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))

    # 3. With the CRD (a stand-in with the operator's group, names and scope): the check passes.
    admin.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", pod_monitor_crd())
    try:

        def established() -> bool:
            conditions = (admin.get(CRD_PATH).get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_for(established, 60, message="the CRD established")
        assert crd_exists("t", monitoring.POD_MONITOR_CRD) is True
        check_local_cluster(stack)
    finally:
        admin.delete(CRD_PATH)

    # 4. The dashboard ConfigMap and the metrics NetworkPolicy are valid objects for the API server.
    configmap = monitoring.dashboard_configmap(stack.dask, names)
    made = admin.post(f"/api/v1/namespaces/{namespace}/configmaps", configmap)
    assert made["metadata"]["labels"]["grafana_dashboard"] == "1"
    [policy] = np_.metrics_policies(stack.dask, names)
    made = admin.post(f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies", policy)
    assert made["spec"] == policy["spec"]

    # 5. 1.20 does not set the namespace-name label the policy matches on (1.21+ does): documented.
    assert np_.NAMESPACE_NAME_LABEL not in (
        admin.get(f"/api/v1/namespaces/{namespace}")["metadata"].get("labels") or {}
    )
