"""Issue 20 B9: CI's preview role, as the real API server authorizes it.

The program gives `cluster.previewArns` an EKS access entry in group `adaptive-dask:previewers` and no
permissions. What `pulumi preview` of this program asks of the cluster (pulumi-kubernetes provider.go):
discovery and the OpenAPI schema (kinds, namespaced or not), then a server-side dry-run create or patch
per changed object; a 403 there makes the provider diff client-side. Asserted here on the 1.20 control
plane's own authorizer (its default bootstrap RBAC, as on EKS): discovery is allowed, every read, dry-run
and write of every object the program ships is refused, Secrets included. The EKS authenticator that maps
the IAM role to the user and group is EKS's and is not tested here.
"""

from __future__ import annotations

import pytest

from infra.config.aws import PREVIEW_GROUP
from testbed.kube.rest import ApiError
from testbed.kube.stack_apply import CLUSTER_SCOPED, PLURALS, record_stack

pytestmark = pytest.mark.kube

PREVIEW_USER = "arn:aws:sts::111122223333:assumed-role/adaptive-dask-preview/ci"
DISCOVERY = ("/api", "/api/v1", "/apis", "/apis/apps/v1", "/openapi/v2", "/version")


def review(admin, attributes: dict, groups: list[str]) -> bool:
    """SubjectAccessReview: the API server's own authorizer decides for that user and those groups."""
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": PREVIEW_USER, "groups": groups, **attributes},
    }
    return bool(admin.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", body)["status"]["allowed"])


def test_the_preview_group_gets_discovery_and_nothing_of_the_programs_objects(kube):
    admin = kube.rest()
    groups = [PREVIEW_GROUP, "system:authenticated"]  # what an EKS access entry's user carries
    for path in DISCOVERY:
        assert review(admin, {"nonResourceAttributes": {"path": path, "verb": "get"}}, groups), path
    objs = record_stack("dev")
    kinds = {(o["apiVersion"], o["kind"]) for o in [*objs.objects, *objs.patches]}
    assert ("v1", "Secret") in kinds and len(kinds) >= 10
    decided = 0
    for api_version, kind in sorted(kinds):
        group = api_version.rpartition("/")[0]
        resource = PLURALS[kind]
        namespace = None if kind in CLUSTER_SCOPED else objs.namespace
        for verb in ("get", "list", "watch", "create", "patch", "update", "delete"):
            attrs = {"verb": verb, "group": group, "resource": resource, "namespace": namespace}
            assert not review(admin, {"resourceAttributes": attrs}, groups), (kind, verb)
            decided += 1
    # the same review says yes for an admin: the no above is the authorizer's, not a malformed question
    assert review(admin, {"resourceAttributes": {"verb": "get", "resource": "secrets"}}, ["system:masters"])
    assert decided == 7 * len(kinds)


def test_a_dry_run_without_rights_is_a_403_the_provider_falls_back_on(kube, namespace):
    """A real identity with no bindings (a fresh ServiceAccount: authenticated, like an access entry
    without policies): the OpenAPI schema is served, a dry-run create of the program's own object is
    Forbidden (the status pulumi-kubernetes turns into a client-side preview) and creates nothing."""
    admin = kube.rest()
    admin.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "previewer"}})
    token = kube.service_account_token(namespace, "previewer")
    user = kube.rest(token=token)
    assert "paths" in user.get("/openapi/v2")
    config_map = next(o for o in record_stack("dev").objects if o["kind"] == "ConfigMap")
    body = {**config_map, "metadata": {"name": config_map["metadata"]["name"]}}
    with pytest.raises(ApiError) as refused:
        user.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body, params={"dryRun": "All"})
    assert refused.value.status == 403
    assert admin.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body, params={"dryRun": "All"})
    assert admin.get_or_none(f"/api/v1/namespaces/{namespace}/configmaps/{body['metadata']['name']}") is None
