"""Pure builders for cluster-autoscaler on EKS: its IAM policy, expander priorities and Helm values.

Everything the `ClusterAutoscaler` component sends to AWS or Helm is computed here from plain values,
so tests (and parliament) can check it without Pulumi.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from infra.facts.placement import POOL_LABEL, SYSTEM_POOL
from infra.facts.versions import image_tag_for

NAMESPACE = "kube-system"
# The ONE place the service-account name lives: the IRSA trust `sub` and the chart's
# `rbac.serviceAccount.name` both read it. (Chart default would be `<release>-aws-cluster-autoscaler`,
# the classic cause of "Not authorized to perform sts:AssumeRoleWithWebIdentity".)
SERVICE_ACCOUNT = "cluster-autoscaler"
RELEASE_NAME = "cluster-autoscaler"

CHART = "cluster-autoscaler"
CHART_REPO = "https://kubernetes.github.io/autoscaler"
CHART_VERSION = "9.59.0"
IMAGE_REPOSITORY = "registry.k8s.io/autoscaling/cluster-autoscaler"

# The "full features" read set from the CA AWS README (auto-discovery + dynamic instance lists).
READ_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
)
WRITE_ACTIONS = ("autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup")


def _arn_parts(cluster_arn: str) -> tuple[str, str, str, str]:
    """(partition, region, account, cluster name) of `arn:<p>:eks:<region>:<account>:cluster/<name>`."""
    match = re.match(
        r"^arn:(?P<p>aws[a-z-]*):eks:(?P<r>[a-z0-9-]+):(?P<a>[0-9]{12}):cluster/(?P<n>.+)$", cluster_arn
    )
    if not match:
        raise ValueError(f"not an EKS cluster ARN: {cluster_arn!r}")
    return match["p"], match["r"], match["a"], match["n"]


def autoscaler_policy(cluster_arn: str) -> dict:
    """Least privilege for CA: reads where AWS allows no scoping; writes only on this cluster's ASGs."""
    partition, region, account, cluster = _arn_parts(cluster_arn)
    asg_arn = f"arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/eks-*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DiscoverNodeGroups",
                "Effect": "Allow",
                # Describe*/GetInstanceTypes* support no resource-level permissions: `*` is the only
                # valid Resource for them (parliament reports nothing here for that reason).
                "Action": [a for a in READ_ACTIONS if a != "eks:DescribeNodegroup"],
                "Resource": "*",
            },
            {
                "Sid": "DescribeOwnNodeGroups",
                "Effect": "Allow",
                "Action": "eks:DescribeNodegroup",
                "Resource": f"arn:{partition}:eks:{region}:{account}:nodegroup/{cluster}/*/*",
            },
            {
                "Sid": "ScaleOwnNodeGroups",
                "Effect": "Allow",
                "Action": list(WRITE_ACTIONS),
                # Managed node group ASGs are named `eks-<node group>-<uuid>` by EKS, and EKS tags each
                # with both keys below; the tags tie the write to THIS cluster's autoscaled groups.
                "Resource": asg_arn,
                "Condition": {
                    "StringEquals": {
                        "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
                        f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster}": "owned",
                    }
                },
            },
        ],
    }


@dataclass(frozen=True)
class NodeGroupRef:
    """A worker node group as the priority expander sees it: its EKS node group name and capacity."""

    nodegroup_name: str
    capacity_type: str  # "SPOT" | "ON_DEMAND"


SPOT_PRIORITY = 50
ON_DEMAND_PRIORITY = 10


def expander_priorities(groups: Sequence[NodeGroupRef]) -> dict[str, list[str]]:
    """Priority expander config: higher wins; regexes match managed node group ASG names.

    EKS names a managed node group's ASG `eks-<nodegroup name>-<uuid>`.
    """
    by_priority: dict[int, list[str]] = {}
    for group in groups:
        priority = SPOT_PRIORITY if group.capacity_type == "SPOT" else ON_DEMAND_PRIORITY
        by_priority.setdefault(priority, []).append(f"^eks-{re.escape(group.nodegroup_name)}-.+$")
    return {str(priority): patterns for priority, patterns in sorted(by_priority.items(), reverse=True)}


def helm_values(
    *,
    cluster_name: str,
    region: str,
    kubernetes_version: str,
    role_arn: str,
    flags: Mapping[str, str],
    priorities: Mapping[str, list[str]] | None,
) -> dict:
    """Values for the cluster-autoscaler chart; `flags` become `--key=value` through `extraArgs`."""
    values: dict = {
        "cloudProvider": "aws",
        "awsRegion": region,
        "fullnameOverride": RELEASE_NAME,
        "autoDiscovery": {"clusterName": cluster_name},
        "image": {"repository": IMAGE_REPOSITORY, "tag": image_tag_for(kubernetes_version)},
        "rbac": {
            "create": True,
            "serviceAccount": {
                "create": True,
                "name": SERVICE_ACCOUNT,
                "annotations": {"eks.amazonaws.com/role-arn": role_arn},
            },
        },
        "extraArgs": {"logtostderr": True, "stderrthreshold": "info", "v": 2, **dict(flags)},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
        "tolerations": [],  # the system nodes it runs on carry no taint
        "podDisruptionBudget": {"maxUnavailable": 1},
        "resources": {
            "requests": {"cpu": "100m", "memory": "600Mi"},
            "limits": {"memory": "600Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if priorities:
        values["expanderPriorities"] = dict(priorities)
    return values
