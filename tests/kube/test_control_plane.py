"""The control plane itself: real API, real controllers, real RBAC, real service-account tokens."""

from __future__ import annotations

import pytest

from testbed.kube.control_plane import wait_for
from testbed.kube.rest import ApiError

pytestmark = pytest.mark.kube


def test_apiserver_is_1_20_and_serves_what_we_rely_on(kube):
    rest = kube.rest()
    assert rest.get("/version")["gitVersion"] == "v1.20.2"
    groups = {v["groupVersion"] for g in rest.get("/apis")["groups"] for v in g["versions"]}
    assert {"apps/v1", "rbac.authorization.k8s.io/v1", "autoscaling/v1", "policy/v1beta1"} <= groups
    # 1.20 differences the suite documents: no policy/v1 (PDB), no autoscaling/v2, no batch/v1 CronJob.
    assert "policy/v1" not in groups
    assert "autoscaling/v2" not in groups


def test_deployment_scale_subresource_drives_replicaset(kube, namespace):
    from kubernetes import client

    apps = client.AppsV1Api(kube.api_client())
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "none", "command": ["sleep", "1000"]}]},
            },
        },
    }
    apps.create_namespaced_deployment(namespace, dep)
    apps.patch_namespaced_deployment_scale(
        "web", namespace, {"spec": {"replicas": 3}}, _content_type="application/merge-patch+json"
    )
    assert apps.read_namespaced_deployment_scale("web", namespace).spec.replicas == 3
    rs = wait_for(
        lambda: [r for r in apps.list_namespaced_replica_set(namespace).items if r.spec.replicas == 3],
        30,
        message="a ReplicaSet at 3 replicas",
    )
    assert rs[0].metadata.owner_references[0].name == "web"
    pods = wait_for(
        lambda: (lambda p: p if len(p) == 3 else None)(
            kube.rest().items(f"/api/v1/namespaces/{namespace}/pods")
        ),
        30,
        message="3 pods created by the ReplicaSet",
    )
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" for p in pods)


def test_service_account_tokens_are_real_and_rbac_is_enforced(kube, namespace):
    rest = kube.rest()
    rest.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "reader"}})
    rest.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        {"metadata": {"name": "pod-reader"},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
    )  # fmt: skip
    rest.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {"metadata": {"name": "reader"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]},
    )  # fmt: skip
    for legacy in (False, True):
        token = kube.service_account_token(namespace, "reader", legacy=legacy)
        sa = kube.rest(token=token)
        assert sa.items(f"/api/v1/namespaces/{namespace}/pods") == []
        with pytest.raises(ApiError) as denied:
            sa.items(f"/api/v1/namespaces/{namespace}/secrets")
        assert denied.value.status == 403
        with pytest.raises(ApiError) as other_ns:
            sa.items("/api/v1/namespaces/default/pods")
        assert other_ns.value.status == 403
    with pytest.raises(ApiError) as bad:
        kube.rest(token="not-a-token").items(f"/api/v1/namespaces/{namespace}/pods")
    assert bad.value.status == 401
