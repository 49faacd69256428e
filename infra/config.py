"""The whole stack config, read once into frozen typed objects and validated before any resource exists.

Why one module: every knob has exactly one default (here), one documented key (README.md, Configuration)
and one check that fails with `ConfigError(full key, bad value, what is allowed)` before the first
resource is registered. Values arrive as the CLI passes them: strings ("3", "true", JSON text), and
JSON objects whose scalars may themselves be strings (`pulumi config set --path` stores strings).

`ConfigReader` / `Field` are reusable by other layers (e.g. the Kubernetes layer) for their own keys.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pulumi

from infra.errors import ConfigError

PROJECT = "adaptive-dask"

TARGETS = ("aws", "local")
NAT_MODES = ("single", "per-az")
# EKS minor versions this toolkit is tested against (standard or extended support at the time of writing).
SUPPORTED_KUBERNETES_VERSIONS = ("1.33", "1.34", "1.35")
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
# The only values CloudWatch Logs accepts for retentionInDays (0 / "never expire" is refused on purpose).
CLOUDWATCH_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
CAPACITY_TYPES = ("ON_DEMAND", "SPOT")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
SUPPORT_TYPES = ("STANDARD", "EXTENDED")
MANAGED_ADDONS = ("vpc-cni", "kube-proxy", "coredns")
RESERVED_NODE_GROUP_NAMES = ("system",)
# Label/taint key prefixes owned by Kubernetes, EKS or this toolkit; a node group must not set them.
RESERVED_LABEL_PREFIXES = ("kubernetes.io/", "k8s.io/", "eks.amazonaws.com/", "adaptive-dask/")
BUILTIN_TAG_KEYS = ("Project", "Stack", "ManagedBy")

# Every key of the project's namespace; anything else there is a typo (checked before anything is read).
TOP_LEVEL_KEYS = (
    "target", "production", "namePrefix", "tags", "network", "cluster", "systemNodeGroup", "workerGroups",
    "dask", "autoscaler", "kubeContext",
)  # fmt: skip
# cluster-autoscaler learns a zero-node group's labels and taints from ASG tags named
# `<NODE_TEMPLATE>/label/<key>` and `<NODE_TEMPLATE>/taint/<key>`; ASG tag keys are at most 128 characters.
NODE_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"
ASG_TAG_KEY_MAX = 128
MAX_NODE_TEMPLATE_KEY = ASG_TAG_KEY_MAX - len(f"{NODE_TEMPLATE}/label/")

MIN_VPC_PREFIX, MAX_VPC_PREFIX = 16, 20  # AWS allows /16 at most; /20 still gives /22 private subnets
MIN_DISK_GIB, MAX_DISK_GIB = 20, 16384  # AL2023 root volume minimum; gp3 maximum
MAX_NODE_GROUP_SIZE = 450  # EKS managed node group quota
MAX_TAINTS = 50  # EKS managed node group limit

_NAME_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_GROUP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_INSTANCE_TYPE_RE = re.compile(
    r"^[a-z][a-z0-9-]*\.(nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal(-[0-9]+xl)?)$"
)
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ADMIN_ARN_RE = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$")
_ADDON_VERSION_RE = re.compile(r"^v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+$")
_AMI_RELEASE_RE = re.compile(r"^(?P<minor>[0-9]+\.[0-9]+)\.[0-9]+-[0-9]{8}$")
_PRIVATE_RANGES = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)
_SERVICE_RANGES = _PRIVATE_RANGES[:3]


# --------------------------------------------------------------------------------------------------
# Typed settings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str  # Kubernetes spelling: NoSchedule | PreferNoSchedule | NoExecute


@dataclass(frozen=True)
class NetworkConfig:
    cidr: str
    az_count: int
    nat_mode: str
    flow_logs: bool
    flow_log_retention_days: int


@dataclass(frozen=True)
class ClusterConfig:
    version: str
    endpoint_public_access: bool
    public_access_cidrs: tuple[str, ...]
    endpoint_private_access: bool
    log_types: tuple[str, ...]
    log_retention_days: int
    admin_arns: tuple[str, ...]
    deployer_admin: bool
    service_cidr: str
    support_type: str
    addon_versions: Mapping[str, str]
    node_ami_release_version: str | None  # None: the newest AMI release for `version` (read from SSM)


@dataclass(frozen=True)
class SystemNodeGroupConfig:
    instance_type: str
    size: int
    disk_gib: int


@dataclass(frozen=True)
class WorkerGroupConfig:
    name: str
    instance_types: tuple[str, ...]
    capacity_type: str
    min_size: int
    max_size: int
    disk_gib: int
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]


@dataclass(frozen=True)
class AwsConfig:
    region: str
    network: NetworkConfig
    cluster: ClusterConfig
    system: SystemNodeGroupConfig
    workers: tuple[WorkerGroupConfig, ...]


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    target: str
    production: bool
    name_prefix: str
    name: str  # `<namePrefix>-<stack>`: the cluster name and the root of every physical name
    tags: Mapping[str, str]
    aws: AwsConfig | None  # None when target == "local"


# --------------------------------------------------------------------------------------------------
# Defaults (the single source; mirrored in the README configuration tables)
# --------------------------------------------------------------------------------------------------

DEFAULT_TARGET = "aws"
DEFAULT_PRODUCTION = False
DEFAULT_NAME_PREFIX = "adask"
DEFAULT_REGION = "us-east-1"
DEFAULT_NETWORK: dict[str, Any] = {
    "cidr": "10.0.0.0/16",
    "azCount": 2,
    "natMode": "single",
    "flowLogs": False,
    "flowLogRetentionDays": 30,
}
DEFAULT_CLUSTER: dict[str, Any] = {
    "version": "1.35",
    "endpointPublicAccess": True,
    "publicAccessCidrs": [],  # non-production only: empty means 0.0.0.0/0
    "endpointPrivateAccess": True,
    "logTypes": ["api", "audit", "authenticator"],
    "logRetentionDays": 30,
    "adminArns": [],
    "deployerAdmin": True,
    "serviceCidr": "172.20.0.0/16",
    "supportType": "STANDARD",
    "addonVersions": {},
    "nodeAmiReleaseVersion": None,
}
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
# Reading primitives
# --------------------------------------------------------------------------------------------------


class Field:
    """One value at a full config key (e.g. `adaptive-dask:workerGroups[0].minSize`) with typed getters."""

    def __init__(self, key: str, value: Any) -> None:
        self.key, self.value = key, value

    def fail(self, allowed: str) -> ConfigError:
        return ConfigError(self.key, self.value, allowed)

    def string(self) -> str:
        if not isinstance(self.value, str):
            raise self.fail("must be a string")
        return self.value

    def choice(self, allowed: tuple[str, ...]) -> str:
        if self.value not in allowed:
            raise self.fail(f"must be one of {', '.join(allowed)}")
        return str(self.value)

    def boolean(self) -> bool:
        if isinstance(self.value, bool):
            return self.value
        if isinstance(self.value, str) and self.value.strip().lower() in ("true", "false"):
            return self.value.strip().lower() == "true"
        raise self.fail("must be true or false")

    def integer(self, lo: int | None = None, hi: int | None = None) -> int:
        value = self.value
        if isinstance(value, bool):
            raise self.fail("must be a whole number")
        numeric_text = isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value)
        if numeric_text or (isinstance(value, float) and value.is_integer()):
            value = int(value)
        if not isinstance(value, int):
            raise self.fail("must be a whole number")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"between {lo} and {hi}" if lo is not None and hi is not None else f">= {lo}"
            raise self.fail(f"must be a whole number {bounds}")
        return value

    def items(self) -> list[Field]:
        if not isinstance(self.value, list):
            raise self.fail("must be a list")
        return [Field(f"{self.key}[{i}]", v) for i, v in enumerate(self.value)]

    def strings(self, *, nonempty: bool = False, unique: bool = True) -> tuple[str, ...]:
        values = tuple(item.string() for item in self.items())
        if nonempty and not values:
            raise self.fail("must be a non-empty list")
        if unique and len(set(values)) != len(values):
            raise self.fail("must not contain duplicates")
        return values

    def mapping(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.fail("must be an object")
        return self.value

    def string_map(self) -> dict[str, str]:
        raw = self.mapping()
        for k, v in raw.items():
            if not isinstance(v, str):
                raise Field(f"{self.key}.{k}", v).fail("must be a string")
        return dict(raw)


class Section:
    """A JSON object config value: merges defaults, rejects unknown fields (typos), hands out Fields."""

    def __init__(self, key: str, value: Any, defaults: Mapping[str, Any]) -> None:
        raw = Field(key, value).mapping()
        unknown = sorted(set(raw) - set(defaults))
        if unknown:
            raise ConfigError(
                f"{key}.{unknown[0]}", raw[unknown[0]], f"unknown field; known: {', '.join(defaults)}"
            )
        self.key, self.values = key, {**defaults, **raw}

    def __getitem__(self, name: str) -> Field:
        return Field(f"{self.key}.{name}", self.values[name])


class ConfigReader:
    """Reads raw CLI strings for one namespace; JSON values are decoded with errors naming the key."""

    def __init__(self, namespace: str = PROJECT) -> None:
        self.namespace = namespace
        self._config = pulumi.Config(namespace)

    def full_key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def raw(self, key: str, default: Any) -> Field:
        text = self._config.get(key)
        return Field(self.full_key(key), default if text is None else text)

    def json(self, key: str, default: Any) -> Field:
        text = self._config.get(key)
        if text is None:
            return Field(self.full_key(key), default)
        try:
            return Field(self.full_key(key), json.loads(text))
        except json.JSONDecodeError:
            raise ConfigError(self.full_key(key), text, "must be valid JSON (an object or a list)") from None

    def section(self, key: str, defaults: Mapping[str, Any]) -> Section:
        return Section(self.full_key(key), self.json(key, {}).value, defaults)


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
    return value


def is_arm_instance_type(instance_type: str) -> bool:
    """Graviton families carry a `g` after the generation digit (m7g, c6gn, t4g), plus the a1 family."""
    family = instance_type.split(".")[0]
    return family == "a1" or bool(re.fullmatch(r"[a-z]+[0-9]+[a-z]*g[a-z]*(-[a-z]+)?", family))


def _label_key(field: Field) -> str:
    key = field.string()
    prefix, _, name = key.rpartition("/")
    ok = bool(_LABEL_NAME_RE.match(name)) and (
        not prefix or (len(prefix) <= 253 and bool(_DNS_SUBDOMAIN_RE.match(prefix)))
    )
    if not ok:
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
    if value and not _LABEL_NAME_RE.match(value):
        raise field.fail("must be a Kubernetes label value: empty or <= 63 alphanumerics, '-', '_', '.'")
    return value


def _disk(field: Field) -> int:
    return field.integer(MIN_DISK_GIB, MAX_DISK_GIB)


def _taints(field: Field) -> tuple[Taint, ...]:
    taints: list[Taint] = []
    items = field.items()
    if len(items) > MAX_TAINTS:
        raise field.fail(f"at most {MAX_TAINTS} taints")
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
    if len({is_arm_instance_type(t) for t in types}) > 1:
        raise s["instanceTypes"].fail("must not mix arm64 (Graviton) and x86_64 instance types in one group")
    min_size = s["minSize"].integer(0, MAX_NODE_GROUP_SIZE)
    max_size = s["maxSize"].integer(1, MAX_NODE_GROUP_SIZE)
    if max_size < min_size:
        raise s["maxSize"].fail(f"must be >= minSize ({min_size})")
    labels_field = s["labels"]
    labels = labels_field.string_map()
    for k, v in labels.items():
        _node_template_key(Field(f"{labels_field.key}.{k}", k))
        _label_value(Field(f"{labels_field.key}.{k}", v))
    return WorkerGroupConfig(
        name=name,
        instance_types=types,
        capacity_type=s["capacityType"].choice(CAPACITY_TYPES),
        min_size=min_size,
        max_size=max_size,
        disk_gib=_disk(s["diskGiB"]),
        labels=MappingProxyType(labels),
        taints=_taints(s["taints"]),
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


def _tags(field: Field) -> dict[str, str]:
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


def _network_config(s: Section) -> NetworkConfig:
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
    return NetworkConfig(
        cidr=str(cidr),
        az_count=s["azCount"].integer(2, 3),
        nat_mode=s["natMode"].choice(NAT_MODES),
        flow_logs=s["flowLogs"].boolean(),
        flow_log_retention_days=_retention(s["flowLogRetentionDays"]),
    )


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

    admins = s["adminArns"].strings()
    for i, arn in enumerate(admins):
        if not _ADMIN_ARN_RE.match(arn):
            raise Field(f"{s['adminArns'].key}[{i}]", arn).fail(
                "must be an IAM role or user ARN (arn:aws:iam::<account>:role/<name>); "
                "map an assumed-role session ARN to its role ARN"
            )

    service = _network(s["serviceCidr"])
    if not any(service.subnet_of(r) for r in _SERVICE_RANGES) or not 12 <= service.prefixlen <= 24:
        raise s["serviceCidr"].fail("must be a /12-/24 inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
    if service.overlaps(ipaddress.IPv4Network(network.cidr)):
        raise s["serviceCidr"].fail(f"must not overlap the VPC CIDR {network.cidr}")

    addon_field = s["addonVersions"]
    addons = addon_field.string_map()
    for name, version in addons.items():
        Field(f"{addon_field.key}.{name}", name).choice(MANAGED_ADDONS)
        if not _ADDON_VERSION_RE.match(version):
            raise Field(f"{addon_field.key}.{name}", version).fail("must look like v1.19.0-eksbuild.1")

    version = _version(s["version"])
    return ClusterConfig(
        version=version,
        endpoint_public_access=public,
        public_access_cidrs=cidrs,
        endpoint_private_access=private,
        log_types=log_types,
        log_retention_days=_retention(s["logRetentionDays"]),
        admin_arns=admins,
        deployer_admin=s["deployerAdmin"].boolean(),
        service_cidr=str(service),
        support_type=s["supportType"].choice(SUPPORT_TYPES),
        addon_versions=MappingProxyType(addons),
        node_ami_release_version=_ami_release(s["nodeAmiReleaseVersion"], version, s["version"].key),
    )


def _ami_release(field: Field, version: str, version_key: str) -> str | None:
    """A pinned EKS AMI release (`<kubernetes version>-<yyyymmdd>`) for the cluster's own minor."""
    if field.value is None:
        return None
    match = _AMI_RELEASE_RE.match(field.string())
    if not match:
        raise field.fail(
            "must be an EKS AMI release version such as 1.35.0-20260115 (or unset: track the newest)"
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


def _name(prefix_field: Field, stack: str) -> str:
    prefix = prefix_field.string()
    if not _NAME_PREFIX_RE.match(prefix):
        raise prefix_field.fail("must match [a-z][a-z0-9-]{0,19}")
    safe_stack = re.sub(r"[^a-z0-9-]", "-", stack.lower())
    return f"{prefix}-{safe_stack}"[:40].rstrip("-")


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def project_config() -> dict[str, Any]:
    """Every key set in the project's namespace. The Python SDK has no public call that lists config keys:
    the CLI passes the whole config as JSON in PULUMI_CONFIG (read by `get_config_env`), tests and the
    automation API set it with `set_all_config` (the `CONFIG` context variable)."""
    from pulumi.runtime import config as runtime_config  # the SDK's own store of the stack config

    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    merged = {k: "[secret]" if runtime_config.is_config_secret(k) else v for k, v in merged.items()}
    return {k.split(":", 1)[1]: v for k, v in merged.items() if k.startswith(f"{PROJECT}:")}


def check_unknown_keys(config: Mapping[str, Any]) -> None:
    """A typo in a top-level key would silently deploy the defaults: refuse it, naming the nearest key."""
    for key in sorted(set(config) - set(TOP_LEVEL_KEYS)):
        by_lower = {k.lower(): k for k in TOP_LEVEL_KEYS}
        near = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
        hint = f"did you mean {PROJECT}:{by_lower[near[0]]}? " if near else ""
        known = ", ".join(TOP_LEVEL_KEYS)
        raise ConfigError(f"{PROJECT}:{key}", config[key], f"unknown key; {hint}known: {known}")


def load_settings(reader_factory: Callable[[str], ConfigReader] = ConfigReader) -> Settings:
    """Read and validate the whole config. Call once, inside the program (never at import time)."""
    check_unknown_keys(project_config())
    cfg = reader_factory(PROJECT)
    target = cfg.raw("target", DEFAULT_TARGET).choice(TARGETS)
    production = cfg.raw("production", DEFAULT_PRODUCTION).boolean()
    stack = pulumi.get_stack()
    prefix_field = cfg.raw("namePrefix", DEFAULT_NAME_PREFIX)
    name = _name(prefix_field, stack)
    user_tags = _tags(cfg.json("tags", {}))
    tags = {"Project": PROJECT, "Stack": stack, "ManagedBy": "pulumi", **user_tags}

    aws_settings: AwsConfig | None = None
    if target == "aws":
        region_field = reader_factory("aws").raw("region", DEFAULT_REGION)
        if not _REGION_RE.match(region_field.string()):
            raise region_field.fail("must be an AWS region such as us-east-1")
        network = _network_config(cfg.section("network", DEFAULT_NETWORK))
        cluster = _cluster_config(
            cfg.section("cluster", DEFAULT_CLUSTER), network, production, cfg.full_key("production")
        )
        aws_settings = AwsConfig(
            region=region_field.string(),
            network=network,
            cluster=cluster,
            system=_system_config(cfg.section("systemNodeGroup", DEFAULT_SYSTEM)),
            workers=_worker_groups(cfg.json("workerGroups", DEFAULT_WORKER_GROUPS)),
        )
    return Settings(
        project=PROJECT,
        stack=stack,
        target=target,
        production=production,
        name_prefix=prefix_field.string(),
        name=name,
        tags=MappingProxyType(tags),
        aws=aws_settings,
    )
