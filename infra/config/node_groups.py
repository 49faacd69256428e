"""The worker and system node groups' keys (`adaptive-dask:workerGroups`, the node-group parts of
`systemNodeGroup`): instance types, sizes, disks, labels and taints, and the limits EKS and the ASGs put
on them (names of 63 characters, 50 taints, 50 tags per ASG), each refused with the key named.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Any

from infra.config.reader import Field, Section
from infra.config.settings import WorkerGroupConfig
from infra.facts.placement import (
    ASG_TAG_KEY_MAX,
    MAX_NODE_TEMPLATE_KEY,
    NODE_TEMPLATE,
    Taint,
    is_label_key,
    is_label_value,
)

MIN_DISK_GIB, MAX_DISK_GIB = 20, 16384  # AL2023 root volume minimum; gp3 maximum
CAPACITY_TYPES = ("ON_DEMAND", "SPOT")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
RESERVED_NODE_GROUP_NAMES = ("system",)
# Label/taint key prefixes owned by Kubernetes, EKS or this toolkit; a node group must not set them.
RESERVED_LABEL_PREFIXES = ("kubernetes.io/", "k8s.io/", "eks.amazonaws.com/", "adaptive-dask/")
MAX_NODE_GROUP_SIZE = 450  # EKS managed node group quota
MAX_TAINTS = 50  # EKS managed node group limit, the Dask-worker taint included
EKS_NODE_GROUP_NAME_MAX = 63
AUTONAME_SUFFIX = 8  # Pulumi names a node group `<logical>-<7 random characters>`
MAX_ASG_TAGS = 50  # per Auto Scaling Group
# Tags EKS itself puts on a managed node group's ASG (eks:cluster-name, eks:nodegroup-name,
# k8s.io/cluster-autoscaler/enabled, k8s.io/cluster-autoscaler/<cluster>, kubernetes.io/cluster/<cluster>).
EKS_OWN_ASG_TAGS = 5
_GROUP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_INSTANCE_TYPE_RE = re.compile(
    r"^[a-z][a-z0-9-]*\.(nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal(-[0-9]+xl)?)$"
)
DEFAULT_WORKER: dict[str, Any] = {
    "instanceTypes": ["m6i.xlarge"],
    "capacityType": "ON_DEMAND",
    "minSize": 0,
    "maxSize": 10,
    "diskGiB": 50,
    "labels": {},
    "taints": [],
}
DEFAULT_WORKER_GROUPS: list[dict[str, Any]] = [{"name": "workers"}]


def instance_type(field: Field) -> str:
    value = field.string()
    if not _INSTANCE_TYPE_RE.match(value):
        raise field.fail("must be an EC2 instance type such as m6i.xlarge")
    if is_arm_instance_type(value):
        # The one place arm64 is decided. Not supported yet: the sizing table is x86_64 only, and that
        # the pinned stock Dask image has an arm64 build is unverified (stored dask-docker builds list
        # linux/amd64 only).
        raise field.fail("arm64 (Graviton) instance types are not supported yet; choose an x86_64 type")
    return value


def is_arm_instance_type(instance_type: str) -> bool:
    """Graviton families carry a `g` after the generation digit (m7g, c6gn, t4g), plus the a1 family."""
    family = instance_type.split(".")[0]
    return family == "a1" or bool(re.fullmatch(r"[a-z]+[0-9]+[a-z]*g[a-z]*(-[a-z]+)?", family))


def _label_key(field: Field) -> str:
    key = field.string()
    if not is_label_key(key):
        raise field.fail(
            "must be a Kubernetes label key: [prefix/]name, name <= 63 alphanumerics, '-', '_', '.'"
        )
    reserved = [p for p in RESERVED_LABEL_PREFIXES if key.startswith(p) or f".{p}" in f".{key}"]
    if reserved:
        raise field.fail(
            f"must not use the reserved prefix {reserved[0]} (set by Kubernetes, EKS or adaptive-dask)"
        )
    return key


def _node_template_key(field: Field) -> str:
    """A worker group's label or taint key also becomes an ASG tag key (scale from zero): it must fit."""
    key = _label_key(field)
    if len(key) > MAX_NODE_TEMPLATE_KEY:
        raise field.fail(
            f"is {len(key)} characters; at most {MAX_NODE_TEMPLATE_KEY}, because cluster-autoscaler reads it "
            f"from the ASG tag {NODE_TEMPLATE}/label|taint/<key> and AWS limits tag keys to {ASG_TAG_KEY_MAX}"
        )
    return key


def _label_value(field: Field) -> str:
    value = field.string()
    if not is_label_value(value):
        raise field.fail("must be a Kubernetes label value: empty or <= 63 alphanumerics, '-', '_', '.'")
    return value


def disk_gib(field: Field) -> int:
    return field.integer(MIN_DISK_GIB, MAX_DISK_GIB)


def _taints(field: Field) -> tuple[Taint, ...]:
    taints: list[Taint] = []
    items = field.items()
    if len(items) > MAX_TAINTS - 1:
        raise field.fail(
            f"at most {MAX_TAINTS - 1} taints: EKS allows {MAX_TAINTS} per node group and every worker group "
            "also carries the Dask-worker taint"
        )
    for item in items:
        section = Section(item.key, item.value, {"key": None, "value": "", "effect": None})
        taint = Taint(
            key=_node_template_key(section["key"]),
            value=_label_value(section["value"]),
            effect=section["effect"].choice(TAINT_EFFECTS),
        )
        if any((t.key, t.effect) == (taint.key, taint.effect) for t in taints):
            raise item.fail("duplicate taint key and effect")
        taints.append(taint)
    return tuple(taints)


def _worker_group(item: Field) -> WorkerGroupConfig:
    s = Section(item.key, item.value, {"name": None, **DEFAULT_WORKER})
    name = s["name"].string() if s.values["name"] is not None else ""
    if not _GROUP_NAME_RE.match(name):
        raise s["name"].fail("must match [a-z][a-z0-9-]{0,19}")
    if name in RESERVED_NODE_GROUP_NAMES:
        raise s["name"].fail(f"{name!r} is reserved for the system node group")
    types = tuple(instance_type(f) for f in s["instanceTypes"].items())
    if not types:
        raise s["instanceTypes"].fail("must list at least one instance type")
    if len(set(types)) != len(types):
        raise s["instanceTypes"].fail("must not contain duplicates")
    min_size = s["minSize"].integer(0, MAX_NODE_GROUP_SIZE)
    max_size = s["maxSize"].integer(1, MAX_NODE_GROUP_SIZE)
    if max_size < min_size:
        raise s["maxSize"].fail(f"must be >= minSize ({min_size})")
    labels_field = s["labels"]
    labels = labels_field.string_map()
    for k, v in labels.items():
        _node_template_key(Field(f"{labels_field.key}.{k}", k))
        _label_value(Field(f"{labels_field.key}.{k}", v))
    group = WorkerGroupConfig(
        name=name,
        instance_types=types,
        capacity_type=s["capacityType"].choice(CAPACITY_TYPES),
        min_size=min_size,
        max_size=max_size,
        disk_gib=disk_gib(s["diskGiB"]),
        labels=MappingProxyType(labels),
        taints=_taints(s["taints"]),
        key=item.key,
    )
    tags = node_template_tag_count(group)
    if tags + EKS_OWN_ASG_TAGS > MAX_ASG_TAGS:
        raise labels_field.fail(
            f"labels and taints make {tags} scale-from-zero tags on the group's ASG; with EKS's own "
            f"{EKS_OWN_ASG_TAGS} at most {MAX_ASG_TAGS} fit: use fewer labels or taints"
        )
    return group


def node_template_tag_count(group: WorkerGroupConfig) -> int:
    """How many cluster-autoscaler node-template tags the group's ASG carries (infra.aws.tags builds them;
    a test holds the two equal): a label or taint each, the capacity type, ephemeral storage."""
    return len(group.node_labels) + len(group.node_taints) + 2


def check_node_group_names(cluster_name: str, workers: tuple[WorkerGroupConfig, ...]) -> None:
    """EKS refuses node group names over 63 characters; the program's are `<cluster>-<group>-<suffix>`."""
    for group in workers:
        length = len(cluster_name) + 1 + len(group.name) + AUTONAME_SUFFIX
        if length > EKS_NODE_GROUP_NAME_MAX:
            room = EKS_NODE_GROUP_NAME_MAX - len(cluster_name) - 1 - AUTONAME_SUFFIX
            raise Field(f"{group.key}.name", group.name).fail(
                f"makes the node group name {cluster_name}-{group.name}-xxxxxxx {length} characters; EKS "
                f"allows {EKS_NODE_GROUP_NAME_MAX}: at most {room} characters here (or shorten namePrefix)"
            )


def worker_groups(field: Field) -> tuple[WorkerGroupConfig, ...]:
    groups: list[WorkerGroupConfig] = []
    items = field.items()
    if not items:
        raise field.fail("must define at least one worker group")
    for item in items:
        group = _worker_group(item)
        if any(g.name == group.name for g in groups):
            raise Field(f"{item.key}.name", group.name).fail("duplicate worker group name")
        groups.append(group)
    return tuple(groups)
