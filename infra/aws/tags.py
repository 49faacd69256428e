"""AWS tags as pure functions of the config: resource names, subnet roles, launched instances, and the
cluster-autoscaler scale-from-zero tags that describe a worker group's nodes (from `facts.placement`)."""

from __future__ import annotations

from collections.abc import Mapping

from infra.config.settings import WorkerGroupConfig
from infra.facts.placement import CAPACITY_TYPE_LABEL, NODE_TEMPLATE, Taint

# Kubernetes taint effects -> the EKS API's spelling.
EKS_TAINT_EFFECTS = {
    "NoSchedule": "NO_SCHEDULE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
}


def name_tag(name: str) -> dict[str, str]:
    """Per-resource tags: just a Name; the common tags come from the AWS provider's default tags."""
    return {"Name": name}


def instance_tags(common: Mapping[str, str], name: str) -> dict[str, str]:
    """Tags for what an ASG launches (instances, volumes, ENIs): provider default tags do not reach them."""
    return {**common, "Name": name}


# What Kubernetes makes AWS create is outside the provider's default tags: the EBS CSI driver tags a volume
# with its StorageClass's `tagSpecification_<N>: "<key>=<value>"` parameters (kubernetes-sigs/
# aws-ebs-csi-driver docs/tagging.md), a Service's load balancer with this annotation (a comma-separated
# `key=value` list, read by the in-tree controller and the AWS Load Balancer Controller alike).
STORAGE_CLASS_TAG_PREFIX = "tagSpecification_"
LOAD_BALANCER_TAGS_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-additional-resource-tags"


def storage_class_tag_parameters(tags: Mapping[str, str]) -> dict[str, str]:
    """StorageClass parameters that put `tags` on every volume the EBS CSI driver provisions from it."""
    return {f"{STORAGE_CLASS_TAG_PREFIX}{i}": f"{k}={v}" for i, (k, v) in enumerate(tags.items(), start=1)}


def annotation_unsafe_tag(tags: Mapping[str, str]) -> str | None:
    """The first tag key the load-balancer annotation cannot carry: its parser splits on ',' and '='."""
    return next((k for k, v in tags.items() if any(c in f"{k}{v}" for c in ",=")), None)


def load_balancer_tags(tags: Mapping[str, str]) -> str:
    """The annotation's value (`annotation_unsafe_tag` must have found nothing)."""
    return ",".join(f"{k}={v}" for k, v in tags.items())


def public_subnet_tags(cluster_name: str, name: str) -> dict[str, str]:
    return {"Name": name, "kubernetes.io/role/elb": "1", f"kubernetes.io/cluster/{cluster_name}": "shared"}


def private_subnet_tags(cluster_name: str, name: str) -> dict[str, str]:
    return {
        "Name": name,
        "kubernetes.io/role/internal-elb": "1",
        f"kubernetes.io/cluster/{cluster_name}": "shared",
    }


def eks_taints(taints: tuple[Taint, ...]) -> list[dict[str, str]]:
    """Taints in the aws.eks.NodeGroup input shape."""
    return [{"key": t.key, "value": t.value or "", "effect": EKS_TAINT_EFFECTS[t.effect]} for t in taints]


def scale_from_zero_tags(group: WorkerGroupConfig) -> dict[str, str]:
    """cluster-autoscaler node-template tags for a worker group's ASG.

    At zero nodes CA can only learn what a new node would look like from these tags; they must match the
    node group's labels and taints exactly, or pending pods with that nodeSelector/toleration never
    trigger a scale-up.
    """
    tags = {f"{NODE_TEMPLATE}/label/{k}": v for k, v in group.node_labels.items()}
    tags[f"{NODE_TEMPLATE}/label/{CAPACITY_TYPE_LABEL}"] = group.capacity_type
    for taint in group.node_taints:
        tags[f"{NODE_TEMPLATE}/taint/{taint.key}"] = f"{taint.value or ''}:{taint.effect}"
    tags[f"{NODE_TEMPLATE}/resources/ephemeral-storage"] = f"{group.disk_gib}Gi"
    return tags
