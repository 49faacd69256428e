"""EksCluster: IAM, encryption, logs, endpoint access, access entries, OIDC, addons, kubeconfig, provider."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from infra.aws.cluster import kubeconfig, log_group_name
from testbed.infra import builders
from testbed.infra.harness import (
    ACCOUNT_ID,
    CALLER_ARN,
    CALLER_ROLE_ARN,
    Graph,
    RecordingMocks,
    run_stack,
    stack_value,
)

GraphOf = Callable[..., Graph]
CLUSTER = "aws:eks/cluster:Cluster"
ENTRY = "aws:eks/accessEntry:AccessEntry"
ASSOC = "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"


def cluster_cfg(stack: str) -> dict:
    return stack_value(stack, "adaptive-dask:cluster", {})


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_cluster_settings(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    c = g.one(CLUSTER).inputs
    cfg = cluster_cfg(stack)
    assert c["version"] == cfg["version"]
    assert c["accessConfig"] == {
        "authenticationMode": "API",
        "bootstrapClusterCreatorAdminPermissions": False,
    }
    assert c["bootstrapSelfManagedAddons"] is False
    assert c["deletionProtection"] is stack_value(stack, "adaptive-dask:production")
    # production's default is EXTENDED (no control-plane upgrade behind the stack's back); dev takes STANDARD
    assert c["upgradePolicy"] == {"supportType": "EXTENDED" if stack == "prod" else "STANDARD"}
    assert c["kubernetesNetworkConfig"]["serviceIpv4Cidr"] == "172.20.0.0/16"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_endpoint_private_on_public_limited_to_the_allow_list(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    vpc_config = g.one(CLUSTER).inputs["vpcConfig"]
    assert vpc_config["endpointPrivateAccess"] is True
    assert vpc_config["endpointPublicAccess"] is True
    assert vpc_config["publicAccessCidrs"] == (cluster_cfg(stack)["publicAccessCidrs"] or ["0.0.0.0/0"])
    private = {
        s.id
        for s in g.of_type("aws:ec2/subnet:Subnet")
        if "kubernetes.io/role/internal-elb" in s.inputs["tags"]
    }
    assert set(vpc_config["subnetIds"]) == private


def test_private_only_endpoint_sends_no_cidrs(stack_graph: GraphOf) -> None:
    cluster = {**cluster_cfg("prod"), "endpointPublicAccess": False, "publicAccessCidrs": []}
    g = stack_graph("prod", overrides={"adaptive-dask:cluster": json.dumps(cluster)})
    vpc_config = g.one(CLUSTER).inputs["vpcConfig"]
    assert vpc_config["endpointPublicAccess"] is False and "publicAccessCidrs" not in vpc_config


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_secrets_encrypted_with_a_rotating_key_the_cluster_role_may_use(
    stack: str, stack_graph: GraphOf
) -> None:
    g = stack_graph(stack)
    key = g.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    cluster = g.one(CLUSTER)
    assert cluster.inputs["encryptionConfig"] == {
        "provider": {"keyArn": key.state["arn"]},
        "resources": ["secrets"],
    }
    role = next(r for r in g.of_type("aws:iam/role:Role") if r.state["arn"] == cluster.inputs["roleArn"])
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "eks.amazonaws.com"}
    kms_policy = next(p for p in g.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id)
    statement = json.loads(kms_policy.inputs["policy"])["Statement"][0]
    assert statement["Resource"] == key.state["arn"]
    assert set(statement["Action"]) == {"kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"}
    attached = {
        a.inputs["policyArn"]
        for a in g.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.state["name"]
    }
    assert attached == {"arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"}
    assert g.depends_on(cluster, kms_policy)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_control_plane_logs_go_to_a_pre_created_group_with_retention(
    stack: str, stack_graph: GraphOf
) -> None:
    g = stack_graph(stack)
    cluster = g.one(CLUSTER)
    cfg = cluster_cfg(stack)
    expected_types = cfg.get("logTypes", ["api", "audit", "authenticator"])
    assert cluster.inputs["enabledClusterLogTypes"] == expected_types
    (group,) = [
        n for n in g.of_type("aws:cloudwatch/logGroup:LogGroup") if n.inputs["name"].startswith("/aws/eks/")
    ]
    assert group.inputs["name"] == f"/aws/eks/{cluster.inputs['name']}/cluster"
    assert group.inputs["retentionInDays"] == cfg["logRetentionDays"]
    assert group.urn in cluster.dependencies


def test_no_log_types_no_log_group(stack_graph: GraphOf) -> None:
    g = stack_graph("dev", overrides={"adaptive-dask:cluster": json.dumps({"logTypes": []})})
    assert g.one(CLUSTER).inputs["enabledClusterLogTypes"] == []
    assert not any(
        n.inputs["name"].startswith("/aws/eks/") for n in g.of_type("aws:cloudwatch/logGroup:LogGroup")
    )


LAPTOP = {"adaptive-dask:cluster": json.dumps({"deployerAdmin": True, "adminArns": []})}


def test_deployer_admin_is_the_role_behind_the_assumed_role_session(stack_graph: GraphOf) -> None:
    g = stack_graph("dev", overrides=LAPTOP)
    (entry,) = g.of_type(ENTRY)
    # The caller is an STS session ARN; the access entry must name the IAM role (path kept).
    assert entry.inputs["principalArn"] == CALLER_ROLE_ARN != CALLER_ARN
    (session_call,) = g.calls_to("aws:iam/getSessionContext:getSessionContext")
    assert session_call.args["arn"] == CALLER_ARN
    (assoc,) = g.of_type(ASSOC)
    assert assoc.inputs["principalArn"] == CALLER_ROLE_ARN
    assert assoc.inputs["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    assert assoc.inputs["accessScope"] == {"type": "cluster"}
    assert g.depends_on(assoc, entry)
    assert entry.inputs["clusterName"] == g.one(CLUSTER).state["name"]


def test_iam_user_deployer_is_used_as_is() -> None:
    user = f"arn:aws:iam::{ACCOUNT_ID}:user/alice"
    g = run_stack("dev", overrides=LAPTOP, mocks=RecordingMocks(caller_arn=user, issuer_arn="unused"))
    assert [e.inputs["principalArn"] for e in g.of_type(ENTRY)] == [user]


def test_configured_admins_get_entries_too(stack_graph: GraphOf) -> None:
    g = stack_graph("prod")
    principals = sorted(a.inputs["principalArn"] for a in g.of_type(ASSOC))
    assert principals == sorted(cluster_cfg("prod")["adminArns"])  # deployerAdmin: false in prod
    assert len(g.of_type(ENTRY)) == len(principals) + len(cluster_cfg("prod")["previewArns"])


def test_deployer_admin_can_be_turned_off(stack_graph: GraphOf) -> None:
    admins = ["arn:aws:iam::111122223333:role/a", "arn:aws:iam::111122223333:role/b"]
    g = stack_graph(
        "dev", overrides={"adaptive-dask:cluster": json.dumps({"deployerAdmin": False, "adminArns": admins})}
    )
    assert sorted(e.inputs["principalArn"] for e in g.of_type(ENTRY)) == admins  # (no previewArns here)
    assert g.calls_to("aws:eks/getAddonVersion:getAddonVersion")  # the rest of the program is unaffected


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_preview_roles_get_an_entry_in_the_preview_group_and_no_access_policy(
    stack: str, stack_graph: GraphOf
) -> None:
    """Issue 20 B9: CI's preview role authenticates (no 401) and holds nothing beyond discovery."""
    from infra.config.aws import PREVIEW_GROUP

    g = stack_graph(stack)
    previews = cluster_cfg(stack)["previewArns"]
    assert previews
    entries = {e.inputs["principalArn"]: e.inputs for e in g.of_type(ENTRY)}
    for arn in previews:
        assert entries[arn]["kubernetesGroups"] == [PREVIEW_GROUP] and entries[arn]["type"] == "STANDARD"
    associated = {a.inputs["principalArn"] for a in g.of_type(ASSOC)}
    assert associated.isdisjoint(previews)  # no EKS access policy: not even view
    assert not PREVIEW_GROUP.startswith(("system:", "eks:", "aws:", "amazon:", "iam:"))  # EKS reserves those


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_oidc_provider_for_irsa(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    issuer = g.one(CLUSTER).state["identities"][0]["oidcs"][0]["issuer"]
    oidc = g.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc.inputs["url"] == issuer
    assert oidc.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert g.exports["oidcIssuer"] == issuer.removeprefix("https://") and not g.exports[
        "oidcIssuer"
    ].startswith("http")


# prod pins every addon (tests/infra/aws/test_live.py); dev with its notebook on adds the two it installs
@pytest.mark.parametrize("notebook", [False, True], ids=["dev", "dev-notebook"])
def test_managed_addons_resolved_for_the_cluster_version(notebook: bool, stack_graph: GraphOf) -> None:
    stack = "dev"
    g = stack_graph(stack, overrides=builders.jupyter_overrides(stack) if notebook else None)
    version = cluster_cfg(stack)["version"]
    calls = {c.args["addonName"]: c for c in g.calls_to("aws:eks/getAddonVersion:getAddonVersion")}
    extra = {"aws-ebs-csi-driver", "eks-pod-identity-agent"} if notebook else set()
    assert set(calls) == {"vpc-cni", "kube-proxy", "coredns", *extra}
    for name, call in calls.items():
        assert call.args["kubernetesVersion"] == version and call.args["mostRecent"] is True
        addon = next(a for a in g.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == name)
        assert addon.inputs["addonVersion"] == g.mocks.invokes[call.token](call)["version"]
        assert addon.inputs["resolveConflictsOnUpdate"] == "OVERWRITE"


def test_pinned_addon_versions_skip_the_lookup(stack_graph: GraphOf) -> None:
    pins = {"coredns": "v1.11.4-eksbuild.2"}
    g = stack_graph("dev", overrides={"adaptive-dask:cluster": json.dumps({"addonVersions": pins})})
    coredns = next(a for a in g.of_type("aws:eks/addon:Addon") if a.inputs["addonName"] == "coredns")
    assert coredns.inputs["addonVersion"] == "v1.11.4-eksbuild.2"
    looked_up = {c.args["addonName"] for c in g.calls_to("aws:eks/getAddonVersion:getAddonVersion")}
    assert looked_up == {"vpc-cni", "kube-proxy"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_kubeconfig_execs_aws_eks_get_token_and_feeds_the_provider(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    cluster = g.one(CLUSTER)
    cfg = json.loads(g.exports["kubeconfig"])
    (entry,) = cfg["clusters"]
    assert entry["cluster"]["server"] == cluster.state["endpoint"]
    assert entry["cluster"]["certificate-authority-data"] == cluster.state["certificateAuthority"]["data"]
    (user,) = cfg["users"]
    exec_ = user["user"]["exec"]
    assert exec_["command"] == "aws"
    args = exec_["args"]
    assert args[:2] == ["eks", "get-token"]
    assert args[args.index("--cluster-name") + 1] == cluster.state["name"]
    assert args[args.index("--region") + 1] == stack_value(stack, "aws:region")
    assert "token" not in json.dumps(user["user"]).replace("get-token", "")
    assert "kubeconfig" in g.secret_exports
    provider = g.one("pulumi:providers:kubernetes")
    assert json.loads(provider.inputs["kubeconfig"]) == cfg
    assert "kubeconfig" in provider.secret_inputs
    assert provider.inputs["enableServerSideApply"] == "true"


def test_pure_kubeconfig_and_log_group_name() -> None:
    cfg = kubeconfig("c1", "https://e", "Q0E=", "eu-west-1")
    assert cfg["current-context"] == "c1"
    assert cfg["users"][0]["user"]["exec"]["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert log_group_name("c1") == "/aws/eks/c1/cluster"
