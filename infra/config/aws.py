"""The AWS layer's keys (`network`, `cluster`, `systemNodeGroup`, `workerGroups`, `tags`, `aws:region`):
defaults, and validators that raise `ConfigError(full key, bad value, what is allowed)`.

Every knob has exactly one default (here) and one documented key (README.md, Configuration).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from infra.config.reader import ConfigReader, Field, Section, key
from infra.config.settings import (
    AwsConfig,
    ClusterConfig,
    ImagesConfig,
    NetworkConfig,
    SystemNodeGroupConfig,
    WorkerGroupConfig,
)
from infra.errors import ConfigError
from infra.facts.placement import (
    ASG_TAG_KEY_MAX,
    MAX_NODE_TEMPLATE_KEY,
    NODE_TEMPLATE,
    Taint,
    is_label_key,
    is_label_value,
)
from infra.facts.versions import SUPPORTED_KUBERNETES_VERSIONS

NAT_MODES = ("single", "per-az")
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
# The only values CloudWatch Logs accepts for retentionInDays (0 / "never expire" is refused on purpose).
CLOUDWATCH_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
CAPACITY_TYPES = ("ON_DEMAND", "SPOT")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
SUPPORT_TYPES = ("STANDARD", "EXTENDED")
MANAGED_ADDONS = ("vpc-cni", "kube-proxy", "coredns")
# Installed only when the stack needs it (dask.dataBuckets / workerPolicyArns: the workers' Pod Identity);
# production must pin it then too (infra/config/load.py).
POD_IDENTITY_AGENT = "eks-pod-identity-agent"
ADDON_NAMES = (*MANAGED_ADDONS, POD_IDENTITY_AGENT)
# A version key set to this tracks the newest release on every run (a routine `up` then rolls nodes or
# addons when AWS publishes one): allowed outside production only, and only when said explicitly.
LATEST = "latest"
# Support types per production flag when `cluster.supportType` is unset: STANDARD auto-upgrades the control
# plane when standard support ends (14 months), which the next `up` would try to undo; a production stack
# pays for EXTENDED (12 more months) rather than have its control plane move under it.
DEFAULT_SUPPORT_TYPE = {False: "STANDARD", True: "EXTENDED"}
RESERVED_NODE_GROUP_NAMES = ("system",)
# Label/taint key prefixes owned by Kubernetes, EKS or this toolkit; a node group must not set them.
RESERVED_LABEL_PREFIXES = ("kubernetes.io/", "k8s.io/", "eks.amazonaws.com/", "adaptive-dask/")
BUILTIN_TAG_KEYS = ("Project", "Stack", "ManagedBy")

MIN_VPC_PREFIX, MAX_VPC_PREFIX = 16, 20  # AWS allows /16 at most; /20 still gives /22 private subnets
MIN_DISK_GIB, MAX_DISK_GIB = 20, 16384  # AL2023 root volume minimum; gp3 maximum
MAX_NODE_GROUP_SIZE = 450  # EKS managed node group quota
MAX_TAINTS = 50  # EKS managed node group limit, the Dask-worker taint included
EKS_NODE_GROUP_NAME_MAX = 63
AUTONAME_SUFFIX = 8  # Pulumi names a node group `<logical>-<7 random characters>`
MAX_ASG_TAGS = 50  # per Auto Scaling Group
# Tags EKS itself puts on a managed node group's ASG (eks:cluster-name, eks:nodegroup-name,
# k8s.io/cluster-autoscaler/enabled, k8s.io/cluster-autoscaler/<cluster>, kubernetes.io/cluster/<cluster>).
EKS_OWN_ASG_TAGS = 5
# The Kubernetes group of `cluster.previewArns`' access entries. The program binds nothing to it: a
# preview needs only discovery (every authenticated user has it), and its dry-run writes are refused
# (403), on which pulumi-kubernetes falls back to a client-side diff. A team may bind reads to it.
PREVIEW_GROUP = "adaptive-dask:previewers"

_NAME_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_GROUP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_INSTANCE_TYPE_RE = re.compile(
    r"^[a-z][a-z0-9-]*\.(nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal(-[0-9]+xl)?)$"
)
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
_ZONE_ID_RE = re.compile(r"^[a-z]+[0-9]+-az[0-9]+$")
_ADMIN_ARN_RE = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$")
_ADDON_VERSION_RE = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+$")
_AMI_RELEASE_RE = re.compile(r"^(?P<minor>[0-9]+\.[0-9]+)\.[0-9]+-[0-9]{8}$")
_PRIVATE_RANGES = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
_SERVICE_RANGES = _PRIVATE_RANGES[:3]


# --------------------------------------------------------------------------------------------------
# Defaults (the single source; mirrored in the README configuration tables)
# --------------------------------------------------------------------------------------------------

DEFAULT_REGION = "us-east-1"
DEFAULT_NETWORK: dict[str, Any] = {
    "cidr": "10.0.0.0/16",
    "azCount": 2,
    "natMode": "single",
    "flowLogs": False,
    "flowLogRetentionDays": 30,
    "zoneIds": [],  # unset: the first usable zones, read on every run; required in production
}
DEFAULT_CLUSTER: dict[str, Any] = {
    "version": "1.35",
    "endpointPublicAccess": True,
    "publicAccessCidrs": [],  # non-production only: empty means 0.0.0.0/0
    "endpointPrivateAccess": True,
    "logTypes": ["api", "audit", "authenticator"],
    "logRetentionDays": 30,
    "adminArns": [],
    "previewArns": [],
    "deployerAdmin": True,
    "serviceCidr": "172.20.0.0/16",
    "supportType": None,  # DEFAULT_SUPPORT_TYPE by `production`
    "addonVersions": {},
    "nodeAmiReleaseVersion": None,
}
DEFAULT_IMAGES: dict[str, Any] = {"repository": False, "keepImages": 30}
DEFAULT_SYSTEM: dict[str, Any] = {"instanceType": "t3.medium", "size": 2, "diskGiB": 30}
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


# --------------------------------------------------------------------------------------------------
# Validators (pure; each raises ConfigError on the Field it was given)
# --------------------------------------------------------------------------------------------------


def _network(field: Field) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(field.string(), strict=True)
    except ValueError:
        raise field.fail("must be an IPv4 network in CIDR notation with no host bits set") from None


def _instance_type(field: Field) -> str:
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


def _disk(field: Field) -> int:
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
    types = tuple(_instance_type(f) for f in s["instanceTypes"].items())
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
        disk_gib=_disk(s["diskGiB"]),
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


def _worker_groups(field: Field) -> tuple[WorkerGroupConfig, ...]:
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


def parse_tags(field: Field) -> dict[str, str]:
    tags = field.string_map()
    for k, v in tags.items():
        key = Field(f"{field.key}.{k}", k)
        if not 1 <= len(k) <= 128 or k.lower().startswith("aws:"):
            raise key.fail("tag keys are 1-128 characters and must not start with aws:")
        if k in BUILTIN_TAG_KEYS:
            raise key.fail(f"is set by adaptive-dask itself (reserved: {', '.join(BUILTIN_TAG_KEYS)})")
        if len(v) > 256:
            raise Field(f"{field.key}.{k}", v).fail("tag values are at most 256 characters")
    if len(tags) + len(BUILTIN_TAG_KEYS) > 50:
        raise field.fail(f"at most {50 - len(BUILTIN_TAG_KEYS)} tags (AWS allows 50 per resource)")
    return tags


def _network_config(s: Section, production: bool, prod_key: str) -> NetworkConfig:
    cidr = _network(s["cidr"])
    if not any(cidr.subnet_of(r) for r in _PRIVATE_RANGES):
        raise s["cidr"].fail("must be inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10")
    if cidr.prefixlen < MIN_VPC_PREFIX:
        raise s["cidr"].fail(f"must be /{MIN_VPC_PREFIX} or smaller (the largest VPC AWS allows)")
    if cidr.prefixlen > MAX_VPC_PREFIX:
        raise s["cidr"].fail(
            f"too small for the subnets: need /{MAX_VPC_PREFIX} or larger to carve a /{MAX_VPC_PREFIX + 2} "
            f"private and a /{MAX_VPC_PREFIX + 4} public subnet per AZ"
        )
    az_count = s["azCount"].integer(2, 3)
    return NetworkConfig(
        cidr=str(cidr),
        az_count=az_count,
        nat_mode=s["natMode"].choice(NAT_MODES),
        flow_logs=s["flowLogs"].boolean(),
        flow_log_retention_days=_retention(s["flowLogRetentionDays"]),
        zone_ids=_zone_ids(s["zoneIds"], az_count, production, prod_key),
    )


def _zone_ids(field: Field, az_count: int, production: bool, prod_key: str) -> tuple[str, ...]:
    """Zones pinned by ID (names map to different IDs per account). Computed zones move when a zone's
    state changes, and existing subnets then fail on CIDR conflicts: production pins them."""
    ids = field.strings()
    for i, zone_id in enumerate(ids):
        if not _ZONE_ID_RE.match(zone_id):
            raise Field(f"{field.key}[{i}]", zone_id).fail("must be an availability zone ID such as use1-az1")
    if ids and len(ids) != az_count:
        raise field.fail(f"must list exactly network.azCount ({az_count}) zone IDs, one per AZ, in order")
    if production and not ids:
        raise field.fail(
            f"must pin the zones by ID in a production stack ({prod_key}=true), e.g. "
            "aws ec2 describe-availability-zones --query 'AvailabilityZones[].ZoneId'"
        )
    return ids


def _principal_arns(field: Field) -> tuple[str, ...]:
    """IAM role or user ARNs, each once (EKS keys access entries by principal)."""
    arns = field.strings()
    for i, arn in enumerate(arns):
        if not _ADMIN_ARN_RE.match(arn):
            raise Field(f"{field.key}[{i}]", arn).fail(
                "must be an IAM role or user ARN (arn:aws:iam::<account>:role/<name>); "
                "map an assumed-role session ARN to its role ARN"
            )
    return arns


def role_name_key(arn: str) -> str:
    """An IAM principal without its path: `role/a/b/name` and `role/name` are one role (names are unique
    per account whatever the path), and EKS allows one access entry per principal."""
    match = re.match(r"^(arn:[^:]+:iam::[0-9]{12}:(?:role|user))/(?:.*/)?([^/]+)$", arn)
    return f"{match[1]}/{match[2]}" if match else arn


def _retention(field: Field) -> int:
    days = field.integer()
    if days not in CLOUDWATCH_RETENTION_DAYS:
        raise field.fail(f"must be a CloudWatch Logs retention: one of {CLOUDWATCH_RETENTION_DAYS}")
    return days


def _cluster_config(s: Section, network: NetworkConfig, production: bool, prod_key: str) -> ClusterConfig:
    public = s["endpointPublicAccess"].boolean()
    private = s["endpointPrivateAccess"].boolean()
    cidrs = tuple(str(_network(f)) for f in s["publicAccessCidrs"].items())
    if len(set(cidrs)) != len(cidrs):
        raise s["publicAccessCidrs"].fail("must not contain duplicates")
    if not public and not private:
        raise s["endpointPrivateAccess"].fail(
            "must be true when endpointPublicAccess is false (no endpoint left)"
        )
    if not public and cidrs:
        raise s["publicAccessCidrs"].fail("must be empty when endpointPublicAccess is false")
    if public and production:
        if not cidrs:
            raise s["publicAccessCidrs"].fail(
                f"must list the allowed CIDRs when the public endpoint is on in a production stack "
                f"({prod_key}=true)"
            )
        if any(ipaddress.IPv4Network(c).prefixlen == 0 for c in cidrs):
            raise s["publicAccessCidrs"].fail(
                f"must not contain 0.0.0.0/0 in a production stack ({prod_key}=true)"
            )
    if public and not cidrs:
        cidrs = ("0.0.0.0/0",)  # AWS's own default, allowed only outside production

    log_types = s["logTypes"].strings()
    for i, log_type in enumerate(log_types):
        Field(f"{s['logTypes'].key}[{i}]", log_type).choice(CONTROL_PLANE_LOG_TYPES)

    admins = _principal_arns(s["adminArns"])

    previews = _principal_arns(s["previewArns"])
    for i, arn in enumerate(previews):
        if role_name_key(arn) in {role_name_key(a) for a in admins}:
            raise Field(f"{s['previewArns'].key}[{i}]", arn).fail(
                "must not also be in adminArns: EKS allows one access entry per principal, and a preview "
                "role is read-only by design"
            )

    service = _network(s["serviceCidr"])
    if not any(service.subnet_of(r) for r in _SERVICE_RANGES) or not 12 <= service.prefixlen <= 24:
        raise s["serviceCidr"].fail("must be a /12-/24 inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
    if service.overlaps(ipaddress.IPv4Network(network.cidr)):
        raise s["serviceCidr"].fail(f"must not overlap the VPC CIDR {network.cidr}")

    addons = _addon_versions(s["addonVersions"], production, prod_key)
    version = _version(s["version"])
    return ClusterConfig(
        version=version,
        endpoint_public_access=public,
        public_access_cidrs=cidrs,
        endpoint_private_access=private,
        log_types=log_types,
        log_retention_days=_retention(s["logRetentionDays"]),
        admin_arns=admins,
        preview_arns=previews,
        deployer_admin=s["deployerAdmin"].boolean(),
        service_cidr=str(service),
        support_type=s.with_default("supportType", DEFAULT_SUPPORT_TYPE[production]).choice(SUPPORT_TYPES),
        addon_versions=MappingProxyType(addons),
        node_ami_release_version=_ami_release(
            s["nodeAmiReleaseVersion"], version, s["version"].key, production, prod_key
        ),
    )


def _addon_versions(field: Field, production: bool, prod_key: str) -> dict[str, str]:
    """Pinned addon versions; `latest` (or, outside production, no entry) tracks the newest build."""
    pins = {}
    for name, version in field.string_map().items():
        entry = Field(f"{field.key}.{name}", version)
        Field(f"{field.key}.{name}", name).choice(ADDON_NAMES)
        if version == LATEST:
            if production:
                raise entry.fail(
                    f"must be a pinned version in a production stack ({prod_key}=true), not {LATEST}"
                )
            continue
        if not _ADDON_VERSION_RE.match(version):
            raise entry.fail(f"must look like v1.19.0-eksbuild.1, or {LATEST!r} to track the newest")
        pins[name] = version
    missing = [a for a in MANAGED_ADDONS if a not in pins]
    if production and missing:
        raise field.fail(
            f"must pin every managed addon in a production stack ({prod_key}=true); missing: "
            f"{', '.join(missing)} (the weekly pin bump writes them: docs in README, Operations)"
        )
    return pins


def check_pinned(addon_versions: Mapping[str, str], addon: str, because: str) -> None:
    """A production stack that installs `addon` (for `because`) pins it like the always-installed ones."""
    if addon not in addon_versions:
        raise ConfigError(
            key("cluster.addonVersions"),
            dict(addon_versions),
            f"must pin {addon} too in a production stack: {because} install it (a version such as "
            "v1.3.9-eksbuild.3; the weekly pin bump writes it)",
        )


def _ami_release(field: Field, version: str, version_key: str, production: bool, prod_key: str) -> str | None:
    """A pinned EKS AMI release (`<kubernetes version>-<yyyymmdd>`) for the cluster's own minor; None
    (`latest`, or unset outside production) tracks the newest, which rolls every node group when AWS
    publishes one (about weekly)."""
    if field.value in (None, LATEST):
        if production:
            raise field.fail(
                f"must pin an EKS AMI release such as 1.35.0-20260115 in a production stack "
                f"({prod_key}=true): tracking the newest rolls every node group, the scheduler's included, "
                "on a routine up"
            )
        return None
    match = _AMI_RELEASE_RE.match(field.string())
    if not match:
        raise field.fail(
            f"must be an EKS AMI release version such as 1.35.0-20260115, or {LATEST!r} to track the newest"
        )
    if match["minor"] != version:
        raise field.fail(f"is for Kubernetes {match['minor']}, but {version_key} is {version}")
    return field.value


def _version(field: Field) -> str:
    if not isinstance(field.value, str):
        raise field.fail(
            f"must be a quoted string (YAML reads 1.30 as the number 1.3); one of "
            f"{', '.join(SUPPORTED_KUBERNETES_VERSIONS)}"
        )
    return field.choice(SUPPORTED_KUBERNETES_VERSIONS)


def _system_config(s: Section) -> SystemNodeGroupConfig:
    return SystemNodeGroupConfig(
        instance_type=_instance_type(s["instanceType"]),
        size=s["size"].integer(1, 10),
        disk_gib=_disk(s["diskGiB"]),
    )


def parse_aws(cfg: ConfigReader, region: Field, production: bool) -> AwsConfig:
    """The AWS layer's settings; `region` is `aws:region` (another namespace)."""
    if not _REGION_RE.match(region.string()):
        raise region.fail("must be an AWS region such as us-east-1")
    network = _network_config(cfg.section("network", DEFAULT_NETWORK), production, cfg.full_key("production"))
    cluster = _cluster_config(
        cfg.section("cluster", DEFAULT_CLUSTER), network, production, cfg.full_key("production")
    )
    return AwsConfig(
        region=region.string(),
        network=network,
        cluster=cluster,
        system=_system_config(cfg.section("systemNodeGroup", DEFAULT_SYSTEM)),
        workers=_worker_groups(cfg.json("workerGroups", DEFAULT_WORKER_GROUPS)),
        images=_images_config(cfg.section("images", DEFAULT_IMAGES)),
    )


def _images_config(s: Section) -> ImagesConfig:
    return ImagesConfig(repository=s["repository"].boolean(), keep_images=s["keepImages"].integer(1, 1000))
