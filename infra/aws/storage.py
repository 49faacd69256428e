"""The notebook's persistent home on EKS: the `aws-ebs-csi-driver` addon with its own Pod Identity role,
and an encrypted gp3 StorageClass. Built only when `dask.jupyter.enabled` (the local target uses the
cluster's own StorageClass).

Decisions (why):
- The driver's controller gets its own role (trust `pods.eks.amazonaws.com`, AssumeRole + TagSession),
  bound by the addon's Pod Identity association to `kube-system/ebs-csi-controller-sa` only, with the AWS
  managed `AmazonEBSCSIDriverPolicy`: the node role stays without EC2 volume rights, so no other pod on
  the node can create, attach or delete volumes.
- Volumes are encrypted with the account's default EBS key (`encrypted: "true"`, no `kmsKeyId`): the
  managed policy covers it, and the cluster's secrets key keeps a key policy that names only EKS. A team
  that wants its own key sets the account's default EBS key (`aws ec2 modify-ebs-default-kms-key-id`);
  the role then also needs grants on that key (only EKS can confirm that path end to end).
- `WaitForFirstConsumer`: the volume is made in the zone the notebook pod is scheduled to (an EBS volume
  lives in one zone); `allowVolumeExpansion`: `dask.jupyter.storage` may grow later.
- reclaimPolicy `Retain` in production (deleting the claim, or the namespace on destroy, leaves the volume
  and the team's notebooks; it is billed until deleted by hand: docs/notebook.md), `Delete` otherwise.
- The driver's node DaemonSet tolerates no taints but those of the notebook's pool: it runs on the system
  pool (untainted) and, when the notebook runs on a worker group, there; other worker nodes keep the
  DaemonSet budget that worker sizing counts on (infra/facts/instance_types.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws import iam
from infra.aws.cluster import EksCluster
from infra.aws.component import AwsComponent
from infra.aws.tags import storage_class_tag_parameters
from infra.config.aws import EBS_CSI_DRIVER
from infra.config.jupyter import AWS_STORAGE_CLASS, JupyterSettings
from infra.facts.placement import tolerations

EBS_CSI_NAMESPACE, EBS_CSI_SERVICE_ACCOUNT = "kube-system", "ebs-csi-controller-sa"
# A service-role policy: its ARN has the `service-role/` path (managed_policy_arn fills in the partition).
EBS_CSI_POLICIES = ("service-role/AmazonEBSCSIDriverPolicy",)
PROVISIONER = "ebs.csi.aws.com"


def storage_class(production: bool, tags: Mapping[str, str]) -> dict:
    """The notebook's StorageClass (cluster-scoped; not the cluster's default class). The provider's
    default tags never reach volumes the driver creates: the stack's cost tags go on them from here."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": AWS_STORAGE_CLASS,
            "labels": {
                "app.kubernetes.io/part-of": "adaptive-dask",
                "app.kubernetes.io/managed-by": "pulumi",
            },
        },
        "provisioner": PROVISIONER,
        "parameters": {
            "type": "gp3",
            "encrypted": "true",
            "csi.storage.k8s.io/fstype": "ext4",
            **storage_class_tag_parameters(tags),
        },
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Retain" if production else "Delete",
        "allowVolumeExpansion": True,
    }


def addon_configuration(jupyter: JupyterSettings) -> str:
    """`configuration_values` of the addon: the node DaemonSet only where the notebook may run."""
    node: dict = {"tolerateAllTaints": False}
    if jupyter.taints:
        node["tolerations"] = tolerations(jupyter.taints)
    return json.dumps({"node": node}, sort_keys=True)


@dataclass(frozen=True)
class EbsCsiDriverArgs:
    jupyter: JupyterSettings
    cluster: EksCluster
    partition: pulumi.Output[str]
    depends_on: Sequence[pulumi.Resource] = ()  # the nodes and the Pod Identity agent addon


class EbsCsiDriver(AwsComponent):
    """The driver's role and the addon (a child of the cluster component, pinned like the others)."""

    TYPE = "adaptive-dask:aws:EbsCsiDriver"

    def __init__(self, name: str, args: EbsCsiDriverArgs, provider: aws.Provider) -> None:
        super().__init__(name, provider)
        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=iam.pod_identity_trust_policy(),
            description=f"EBS CSI controller (Pod Identity: {EBS_CSI_NAMESPACE}/{EBS_CSI_SERVICE_ACCOUNT})",
            opts=self._opts(),
        )
        attached = [
            aws.iam.RolePolicyAttachment(
                f"{name}-{policy.rsplit('/', 1)[-1]}",
                role=self.role.name,
                policy_arn=args.partition.apply(lambda p, n=policy: iam.managed_policy_arn(p, n)),
                opts=self._opts(),
            )
            for policy in EBS_CSI_POLICIES
        ]
        self.addon = args.cluster.add_addon(
            EBS_CSI_DRIVER,
            depends_on=[*args.depends_on, *attached],
            configuration_values=addon_configuration(args.jupyter),
            pod_identity_associations=[
                aws.eks.AddonPodIdentityAssociationArgs(
                    role_arn=self.role.arn, service_account=EBS_CSI_SERVICE_ACCOUNT
                )
            ],
        )
        self.role_arn: pulumi.Output[str] = self.role.arn
        self.register_outputs({"roleArn": self.role_arn})
