"""`NodeGroups`: a fixed `system` managed node group plus one autoscaled managed node group per worker group.

Why this shape:
- Every group gets its own launch template: IMDSv2 required with hop limit 1 (pods cannot reach the node
  role's credentials; they use IRSA), an encrypted gp3 root volume, and tags on what the ASG launches.
- Worker groups carry the Dask-worker taint so only Dask workers land there, and their desired size is
  ignored (`scalingConfig.desiredSize`, camelCase: nested paths are not translated) because
  cluster-autoscaler owns it.
- Managed node group tags never reach the Auto Scaling Group, so the cluster-autoscaler
  scale-from-zero tags (labels, taints, ephemeral storage) are put on the ASG with aws.autoscaling.Tag.
  A managed node group has exactly one ASG, so the tags target `resources[0].autoscalingGroups[0]`,
  which keeps the resource count static (visible in preview).
- In a run that changes a worker group's bounds, the desired size is sent after all - the live one,
  clamped into the new bounds (`infra.live.worker_scaling`) - and the group is tagged so the policy pack
  can tell this deliberate write from a forgotten ignore.
- Nodes track the newest EKS AMI release for the cluster version (read from SSM on every run) unless
  `cluster.nodeAmiReleaseVersion` pins one; a new release rolls the groups like any node group update.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.aws import iam
from infra.aws.component import AwsComponent
from infra.aws.live import LiveNodeGroup, worker_scaling
from infra.aws.tags import eks_taints, instance_tags, scale_from_zero_tags
from infra.config.settings import SystemNodeGroupConfig, WorkerGroupConfig
from infra.facts.placement import system_labels

ROOT_DEVICE = "/dev/xvda"  # AL2023 root device name
# Present (value: the live desired size read) only in a run where the program writes the desired size.
DESIRED_FROM_LIVE_TAG = "adaptive-dask/desired-size-from-live"


# x86_64 only: the config refuses arm64 instance types (infra/config/aws.py says why).
AMI_TYPE = "AL2023_x86_64_STANDARD"
ARCHITECTURE = "x86_64"


def ami_release_parameter(kubernetes_version: str, arch: str) -> str:
    """The public SSM parameter holding the newest AL2023 EKS AMI release for a version and architecture."""
    return (
        f"/aws/service/eks/optimized-ami/{kubernetes_version}/amazon-linux-2023/{arch}"
        "/standard/recommended/release_version"
    )


def launch_template_args(name: str, disk_gib: int, common_tags: Mapping[str, str]) -> dict[str, Any]:
    """Launch template inputs for a node group (no instance type, AMI or profile: EKS sets those)."""
    tags = instance_tags(common_tags, name)
    return {
        "metadata_options": {
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": 1,
        },
        "block_device_mappings": [
            {
                "device_name": ROOT_DEVICE,
                "ebs": {
                    "volume_size": disk_gib,
                    "volume_type": "gp3",
                    "encrypted": "true",
                    "delete_on_termination": "true",
                },
            }
        ],
        "tag_specifications": [
            {"resource_type": kind, "tags": tags} for kind in ("instance", "volume", "network-interface")
        ],
        "update_default_version": True,
    }


def tag_resource_name(group_logical: str, key: str) -> str:
    """Stable logical name per ASG tag key (keys contain '/', which is awkward in URNs)."""
    return f"{group_logical}-asg-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class NodeGroupsArgs:
    cluster_name: pulumi.Input[str]
    cluster_version: str
    subnet_ids: pulumi.Input[Sequence[str]]
    partition: pulumi.Input[str]
    system: SystemNodeGroupConfig
    workers: tuple[WorkerGroupConfig, ...]
    tags: Mapping[str, str]
    live_node_groups: Mapping[str, LiveNodeGroup] = dataclasses.field(default_factory=dict)
    ami_release_version: str | None = None  # None: the newest release for cluster_version, from SSM
    # Resources every node needs before it can join and become Ready (vpc-cni, kube-proxy addons).
    depends_on: Sequence[pulumi.Resource] = ()


class NodeGroups(AwsComponent):
    """Node IAM role, per-group launch templates, managed node groups and scale-from-zero ASG tags."""

    TYPE = "adaptive-dask:aws:NodeGroups"

    def __init__(
        self,
        name: str,
        args: NodeGroupsArgs,
        provider: aws.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(name, provider, opts)
        self._name = name
        self._args = args
        partition = pulumi.Output.from_input(args.partition)

        self.role = aws.iam.Role(
            f"{name}-node", assume_role_policy=iam.node_trust_policy(), opts=self._opts()
        )
        self._attachments = self._attach_managed(f"{name}-node", self.role, iam.NODE_POLICIES, partition)

        self.launch_templates: dict[str, aws.ec2.LaunchTemplate] = {}
        self._releases: dict[str, pulumi.Input[str]] = {}
        self.system = self._group(
            "system",
            instance_types=[args.system.instance_type],
            capacity_type="ON_DEMAND",
            scaling={
                "min_size": args.system.size,
                "max_size": args.system.size,
                "desired_size": args.system.size,
            },
            disk_gib=args.system.disk_gib,
            labels=system_labels(),
            taints=[],
            ignore_changes=[],
        )
        self.workers: dict[str, aws.eks.NodeGroup] = {}
        self.asg_names: dict[str, pulumi.Output[str]] = {}
        self.asg_tags: dict[str, list[aws.autoscaling.Tag]] = {}
        for group in args.workers:
            self._worker_group(group)

        self.all_groups: list[aws.eks.NodeGroup] = [self.system, *self.workers.values()]
        self.node_group_names: dict[str, pulumi.Output[str]] = {
            "system": self.system.node_group_name,
            **{g: ng.node_group_name for g, ng in self.workers.items()},
        }
        self.register_outputs({"nodeGroupNames": self.node_group_names, "asgNames": self.asg_names})

    def _worker_group(self, group: WorkerGroupConfig) -> None:
        """One autoscaled worker group, and the ASG tags cluster-autoscaler reads to scale it from zero."""
        live = self._args.live_node_groups.get(group.name)
        scaling = worker_scaling(group, live)
        marker = (
            {} if scaling.ignore_desired or live is None else {DESIRED_FROM_LIVE_TAG: str(live.desired_size)}
        )
        node_group = self._group(
            group.name,
            instance_types=list(group.instance_types),
            capacity_type=group.capacity_type,
            scaling={
                "min_size": scaling.min_size,
                "max_size": scaling.max_size,
                "desired_size": scaling.desired_size,
            },
            disk_gib=group.disk_gib,
            labels=group.node_labels,
            taints=eks_taints(group.node_taints),
            ignore_changes=["scalingConfig.desiredSize"] if scaling.ignore_desired else [],
            extra_tags=marker,
        )
        self.workers[group.name] = node_group
        asg_name = node_group.resources.apply(lambda rs: rs[0].autoscaling_groups[0].name)
        self.asg_names[group.name] = asg_name
        self.asg_tags[group.name] = [
            aws.autoscaling.Tag(
                tag_resource_name(f"{self._name}-{group.name}", key),
                autoscaling_group_name=asg_name,
                tag={"key": key, "value": value, "propagate_at_launch": False},
                opts=self._opts(),
            )
            for key, value in scale_from_zero_tags(group).items()
        ]

    def _group(
        self,
        group: str,
        *,
        instance_types: list[str],
        capacity_type: str,
        scaling: dict[str, int],
        disk_gib: int,
        labels: dict[str, str],
        taints: list[dict[str, str]],
        ignore_changes: list[str],
        extra_tags: Mapping[str, str] | None = None,
    ) -> aws.eks.NodeGroup:
        logical = f"{self._name}-{group}"
        template = aws.ec2.LaunchTemplate(
            logical, **launch_template_args(logical, disk_gib, self._args.tags), opts=self._opts()
        )
        self.launch_templates[group] = template
        return aws.eks.NodeGroup(
            logical,
            cluster_name=self._args.cluster_name,
            version=self._args.cluster_version,
            node_role_arn=self.role.arn,
            subnet_ids=self._args.subnet_ids,
            instance_types=instance_types,
            ami_type=AMI_TYPE,
            release_version=self._release(ARCHITECTURE),
            capacity_type=capacity_type,
            scaling_config=scaling,
            update_config={"max_unavailable_percentage": 33},
            labels=labels,
            taints=taints,
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            tags={"Name": logical, **(extra_tags or {})},
            opts=self._opts(
                depends_on=[*self._attachments, *self._args.depends_on],
                ignore_changes=ignore_changes,
            ),
        )

    def _release(self, arch: str) -> pulumi.Input[str]:
        """The AMI release every group of this architecture runs: pinned, or the newest for the version."""
        if self._args.ami_release_version is not None:
            return self._args.ami_release_version
        if arch not in self._releases:
            self._releases[arch] = aws.ssm.get_parameter_output(
                name=ami_release_parameter(self._args.cluster_version, arch),
                opts=self._invoke(),
            ).insecure_value  # a public, non-secret value: keep it readable in diffs
        return self._releases[arch]
