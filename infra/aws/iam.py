"""IAM policy documents as pure functions (json text), so tests read them without any invoke."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from infra.config.data_access import DataBucket

VERSION = "2012-10-17"

# AWS-managed policies each role needs (names only; the partition is filled in by `managed_policy_arn`).
CLUSTER_POLICIES = ("AmazonEKSClusterPolicy",)
# The CNI policy is not on the node role: vpc-cni gets it through its own IRSA role (VPC_CNI_POLICIES), so
# pods on the node (which could otherwise borrow the node role) never hold ENI/IP-management rights.
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly")
VPC_CNI_POLICIES = ("AmazonEKS_CNI_Policy",)
VPC_CNI_NAMESPACE, VPC_CNI_SERVICE_ACCOUNT = "kube-system", "aws-node"
CLUSTER_ADMIN_ACCESS_POLICY = "AmazonEKSClusterAdminPolicy"


def managed_policy_arn(partition: str, name: str) -> str:
    return f"arn:{partition}:iam::aws:policy/{name}"


def access_policy_arn(partition: str, name: str = CLUSTER_ADMIN_ACCESS_POLICY) -> str:
    """EKS access policies live in their own namespace, not in IAM."""
    return f"arn:{partition}:eks::aws:cluster-access-policy/{name}"


def _doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": VERSION, "Statement": list(statements)}, sort_keys=True)


def service_trust_policy(service: str, actions: tuple[str, ...] = ("sts:AssumeRole",)) -> str:
    """Trust policy letting one AWS service principal assume the role."""
    return _doc({"Effect": "Allow", "Principal": {"Service": service}, "Action": list(actions)})


def cluster_trust_policy() -> str:
    # EKS tags its sessions (sts:TagSession) since the access-entry / Auto Mode era.
    return service_trust_policy("eks.amazonaws.com", ("sts:AssumeRole", "sts:TagSession"))


def node_trust_policy() -> str:
    return service_trust_policy("ec2.amazonaws.com")


def flow_logs_trust_policy(account_id: str) -> str:
    """Only flow-log deliveries for this account may assume the role (confused-deputy guard)."""
    return _doc(
        {
            "Effect": "Allow",
            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
            "Action": ["sts:AssumeRole"],
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        }
    )


def flow_logs_policy(log_group_arn: str) -> str:
    """Write access to the streams of exactly one log group; listing groups has no resource scope."""
    return _doc(
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": f"{log_group_arn}:*",
        },
        {"Effect": "Allow", "Action": ["logs:DescribeLogGroups"], "Resource": "*"},
    )


def secrets_encryption_policy(key_arn: str) -> str:
    """What the EKS control plane needs on the secrets KMS key, and nothing else."""
    return _doc(
        {
            "Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
            "Resource": key_arn,
        }
    )


def issuer_host(issuer_url: str) -> str:
    """IAM condition keys use the issuer without scheme: `oidc.eks.<region>.amazonaws.com/id/<ID>`."""
    return re.sub(r"^https://", "", issuer_url).rstrip("/")


def irsa_trust_policy(oidc_provider_arn: str, issuer_url: str, namespace: str, service_account: str) -> dict:
    """Only that one service account, with the STS audience, may assume the role."""
    host = issuer_host(issuer_url)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                        f"{host}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }


# ---------------------------------------------------------------- the workers' data role (Pod Identity)

POD_IDENTITY_SERVICE = "pods.eks.amazonaws.com"
S3_READ_ACTIONS = ("s3:GetObject",)
S3_WRITE_ACTIONS = ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")


def pod_identity_trust_policy() -> str:
    """EKS Pod Identity assumes the role for the associated ServiceAccount and tags the session."""
    return service_trust_policy(POD_IDENTITY_SERVICE, ("sts:AssumeRole", "sts:TagSession"))


def _sid(*parts: str) -> str:
    """A statement id from free text (IAM allows only letters and digits)."""
    return re.sub(r"[^A-Za-z0-9]", "", "".join(p.title() for p in parts))[:100]


def data_access_policy(
    partition: str, region: str, buckets: Sequence[DataBucket], kms_key_arns: Sequence[str]
) -> str:
    """Exactly the configured buckets: list (within the prefix), read objects under it, and write and
    delete them only for `readwrite` entries. Named buckets only (never a wildcard bucket, never an AWS
    managed S3 policy); KMS use only through S3 in this region (`kms:ViaService`)."""
    statements: list[dict[str, Any]] = []
    for i, entry in enumerate(buckets):
        bucket_arn = f"arn:{partition}:s3:::{entry.bucket}"
        listing: dict[str, Any] = {
            "Sid": _sid(f"List{i}", entry.bucket),
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
        }
        if entry.prefix:
            listing["Condition"] = {"StringLike": {"s3:prefix": [entry.prefix, f"{entry.prefix}*"]}}
        actions = [*S3_READ_ACTIONS, *(S3_WRITE_ACTIONS if entry.writes else ())]
        objects = {
            "Sid": _sid(f"{'ReadWrite' if entry.writes else 'Read'}{i}", entry.bucket),
            "Effect": "Allow",
            "Action": actions,
            "Resource": [f"{bucket_arn}/{entry.prefix}*"],
        }
        statements += [listing, objects]
    if kms_key_arns:
        statements.append(
            {
                "Sid": "DecryptThroughS3",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": list(kms_key_arns),
                "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
            }
        )
    return _doc(*statements)
