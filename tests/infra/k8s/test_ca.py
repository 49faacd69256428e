"""cluster-autoscaler: IAM documents (linted with parliament), version map, Helm values, expander."""

from __future__ import annotations

import re

import pytest

from infra.aws import iam
from infra.config.autoscaler import choose_expander
from infra.facts.versions import CA_IMAGE_TAGS, SUPPORTED_KUBERNETES_VERSIONS, image_tag_for
from infra.k8s import ca as k8s_ca
from tests.infra.iam_lint import findings

CLUSTER = "adask-dev"
CLUSTER_ARN = f"arn:aws:eks:eu-west-1:123456789012:cluster/{CLUSTER}"
ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"
OIDC_ARN = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"


# ---------------------------------------------------------------- IRSA trust policy


def test_trust_policy_pins_one_service_account_and_the_sts_audience():
    doc = iam.irsa_trust_policy(OIDC_ARN, ISSUER, "kube-system", "cluster-autoscaler")
    [statement] = doc["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {"Federated": OIDC_ARN}
    host = "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"
    assert statement["Condition"] == {
        "StringEquals": {
            f"{host}:sub": "system:serviceaccount:kube-system:cluster-autoscaler",
            f"{host}:aud": "sts.amazonaws.com",
        }
    }


def test_trust_policy_lint_has_only_the_two_justified_findings():
    doc = iam.irsa_trust_policy(OIDC_ARN, ISSUER, k8s_ca.NAMESPACE, k8s_ca.SERVICE_ACCOUNT)
    issues = [issue for issue, _ in findings(doc)]
    # Justified, both artefacts of parliament targeting identity policies:
    # - UNKNOWN_FEDERATION_SOURCE: its list of federation principals has no IAM OIDC providers, yet an
    #   EKS cluster's OIDC provider ARN is exactly the principal IRSA requires.
    # - MALFORMED "neither Resource nor NotResource": a role trust policy must NOT carry a Resource.
    assert issues == ["MALFORMED", "UNKNOWN_FEDERATION_SOURCE"]
    assert "Resource" not in doc["Statement"][0]


def test_sa_name_is_shared_by_trust_policy_and_chart_values():
    doc = iam.irsa_trust_policy(OIDC_ARN, ISSUER, k8s_ca.NAMESPACE, k8s_ca.SERVICE_ACCOUNT)
    sub = next(v for k, v in doc["Statement"][0]["Condition"]["StringEquals"].items() if k.endswith(":sub"))
    values = k8s_ca.helm_values(
        cluster_name=CLUSTER,
        region="eu-west-1",
        kubernetes_version="1.34",
        role_arn="arn:r",
        flags={},
        priorities=None,
    )
    sa = values["rbac"]["serviceAccount"]
    assert sub == f"system:serviceaccount:kube-system:{sa['name']}"
    assert sa["create"] is True and sa["annotations"] == {"eks.amazonaws.com/role-arn": "arn:r"}


def test_issuer_host_strips_scheme_and_slash():
    assert iam.issuer_host("https://oidc.example/id/X/") == "oidc.example/id/X"


# ---------------------------------------------------------------- permissions


def test_autoscaler_policy_lints_clean():
    assert findings(k8s_ca.autoscaler_policy(CLUSTER_ARN)) == []


def test_read_actions_are_the_full_features_set():
    doc = k8s_ca.autoscaler_policy(CLUSTER_ARN)
    actions = set()
    for st in doc["Statement"]:
        acts = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        actions.update(a for a in acts if not a.endswith(("SetDesiredCapacity", "InAutoScalingGroup")))
    assert actions == {
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeLaunchConfigurations",
        "autoscaling:DescribeScalingActivities",
        "ec2:DescribeImages",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:GetInstanceTypesFromInstanceRequirements",
        "eks:DescribeNodegroup",
    }


def test_writes_only_on_this_clusters_tagged_groups():
    doc = k8s_ca.autoscaler_policy(CLUSTER_ARN)
    writes = [s for s in doc["Statement"] if "autoscaling:SetDesiredCapacity" in s["Action"]]
    assert len(writes) == 1
    [w] = writes
    assert sorted(w["Action"]) == [
        "autoscaling:SetDesiredCapacity",
        "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    assert w["Condition"] == {
        "StringEquals": {
            "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
            f"aws:ResourceTag/k8s.io/cluster-autoscaler/{CLUSTER}": "owned",
        }
    }
    assert w["Resource"].startswith("arn:aws:autoscaling:eu-west-1:123456789012:autoScalingGroup:")
    # no other statement grants anything that changes capacity
    others = [s for s in doc["Statement"] if s is not w]
    for s in others:
        acts = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all(re.match(r"^[a-z0-9]+:(Describe|Get)", a) for a in acts)


def test_describe_nodegroup_is_scoped_to_the_cluster():
    doc = k8s_ca.autoscaler_policy("arn:aws-cn:eks:cn-north-1:123456789012:cluster/c1")
    [st] = [s for s in doc["Statement"] if s["Action"] == "eks:DescribeNodegroup"]
    assert st["Resource"] == "arn:aws-cn:eks:cn-north-1:123456789012:nodegroup/c1/*/*"


def test_policy_refuses_a_non_cluster_arn():
    with pytest.raises(ValueError):
        k8s_ca.autoscaler_policy("adask-dev")


# ---------------------------------------------------------------- version map


def test_every_mapped_tag_has_the_kubernetes_minor():
    for minor, tag in CA_IMAGE_TAGS.items():
        assert re.fullmatch(r"v\d+\.\d+\.\d+", tag)
        assert tag[1:].rsplit(".", 1)[0] == minor


@pytest.mark.parametrize("version", ["1.33", "1.33.4", "v1.33"])
def test_image_tag_follows_the_cluster_minor(version):
    assert image_tag_for(version).startswith("v1.33.")


@pytest.mark.parametrize("version", ["1.29", "1.99"])
def test_unknown_minor_has_no_tag(version):
    with pytest.raises(KeyError):
        image_tag_for(version)


def test_versions_supported_by_the_cluster_layer_all_have_a_tag():

    assert set(SUPPORTED_KUBERNETES_VERSIONS) <= set(CA_IMAGE_TAGS)


# ---------------------------------------------------------------- expander


def test_auto_expander_prefers_spot_only_when_there_is_a_choice():
    assert choose_expander("auto", ["SPOT", "ON_DEMAND"]) == "priority,least-waste"
    assert choose_expander("auto", ["SPOT", "SPOT"]) == "least-waste"
    assert choose_expander("auto", ["ON_DEMAND"]) == "least-waste"
    assert choose_expander("random", ["SPOT", "ON_DEMAND"]) == "random"


def test_priorities_rank_spot_groups_above_on_demand_and_match_their_asgs():
    prio = k8s_ca.expander_priorities(
        [
            k8s_ca.NodeGroupRef("adask-prod-spot-x1", "SPOT"),
            k8s_ca.NodeGroupRef("adask-prod-od-x2", "ON_DEMAND"),
        ]
    )
    ranked = sorted(prio.items(), key=lambda kv: -int(kv[0]))
    (high, spot_patterns), (low, od_patterns) = ranked
    assert int(high) > int(low)
    # EKS names the ASG of a managed node group eks-<node group name>-<uuid>
    assert any(re.match(p, "eks-adask-prod-spot-x1-0ac7d2f1-1b2c-3d4e") for p in spot_patterns)
    assert not any(re.match(p, "eks-adask-prod-od-x2-0ac7d2f1-1b2c-3d4e") for p in spot_patterns)
    assert any(re.match(p, "eks-adask-prod-od-x2-0ac7d2f1-1b2c-3d4e") for p in od_patterns)


# ---------------------------------------------------------------- Helm values


def test_helm_values():
    flags = {"expander": "least-waste", "scale-down-unneeded-time": "5m"}
    values = k8s_ca.helm_values(
        cluster_name=CLUSTER,
        region="eu-west-1",
        kubernetes_version="1.35.1",
        role_arn="arn:role",
        flags=flags,
        priorities=None,
    )
    assert values["cloudProvider"] == "aws"
    assert values["awsRegion"] == "eu-west-1"
    assert values["autoDiscovery"] == {"clusterName": CLUSTER}
    assert values["image"]["tag"] == CA_IMAGE_TAGS["1.35"]
    assert values["image"]["repository"] == "registry.k8s.io/autoscaling/cluster-autoscaler"
    assert values["priorityClassName"] == "system-cluster-critical"
    assert values["nodeSelector"] == {"adaptive-dask/pool": "system"}
    assert values["tolerations"] == []
    assert values["podDisruptionBudget"] == {"maxUnavailable": 1}
    assert values["extraArgs"]["expander"] == "least-waste"
    assert values["extraArgs"]["scale-down-unneeded-time"] == "5m"
    assert "expanderPriorities" not in values
    assert values["containerSecurityContext"]["allowPrivilegeEscalation"] is False
    assert values["securityContext"]["runAsNonRoot"] is True


def test_helm_values_carry_priorities_for_the_priority_expander():
    values = k8s_ca.helm_values(
        cluster_name=CLUSTER,
        region="eu-west-1",
        kubernetes_version="1.34",
        role_arn="arn:role",
        flags={"expander": "priority,least-waste"},
        priorities={"50": ["^eks-a-.+$"]},
    )
    assert values["expanderPriorities"] == {"50": ["^eks-a-.+$"]}
