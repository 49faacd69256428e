"""What every check reads: the resource type tokens and facts the pack knows, and small helpers over the
props the engine hands over (camelCase wire names, wrapped in pulumi-policy proxies: so `Mapping` and
`Sequence`, never `dict`/`list`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# --------------------------------------------------------------------------------------------------
# Resource types (wire tokens)
# --------------------------------------------------------------------------------------------------

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SUBNET = "aws:ec2/subnet:Subnet"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
ASG = "aws:autoscaling/group:Group"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
IAM_POLICY_DOC_TYPES = {
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
IAM_ROLE = "aws:iam/role:Role"
ADDON = "aws:eks/addon:Addon"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
ADMISSION_POLICY = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
ADMISSION_BINDING = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding"

DASK_SCHEDULER_PORT = 8786
DASK_DASHBOARD_PORT = 8787
OPEN_CIDRS = {ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")}
READ_ONLY_VERBS = ("Describe", "List", "Get", "BatchGet")
# The program's mark on a node group whose desired size it writes on purpose (infra/aws/nodegroups.py; the
# pack runs without the program's code, so tests/policy checks the two stay equal).
DESIRED_FROM_LIVE_TAG = "adaptive-dask/desired-size-from-live"

# --------------------------------------------------------------------------------------------------
# Small helpers over proxied props
# --------------------------------------------------------------------------------------------------


def get_path(obj: Any, path: str, default: Any = None) -> Any:
    """Follow a dotted camelCase path through Mappings (and single-element Sequences, which older
    provider schemas use for max-1 blocks such as `encryptionConfig`)."""
    cur = obj
    for part in path.split("."):
        if is_seq(cur) and len(cur) == 1:
            cur = cur[0]
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def is_seq(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if is_seq(value) else [value]


def truthy(value: Any) -> bool:
    """Booleans sometimes travel as strings (launch template network interfaces use "true")."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def port_number(value: Any) -> int | None:
    """An integer from a wire number (mocks and the engine send floats); None for names/absent."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def open_cidr(cidr: Any) -> bool:
    try:
        return ipaddress.ip_network(str(cidr).strip(), strict=False) in OPEN_CIDRS
    except ValueError:
        return False


def allow_list_ok(ranges: Any) -> bool:
    """A real allow-list: non-empty and not the whole internet."""
    items = [str(r) for r in as_list(ranges) if str(r).strip()]
    return bool(items) and not any(open_cidr(r) for r in items)


def ignores(ignore_changes: Iterable[str], path: str) -> bool:
    """True if `path` (camelCase) or one of its parents is in ignoreChanges."""
    wanted = path.split(".")
    for entry in ignore_changes or ():
        parts = str(entry).split(".")
        if parts == wanted[: len(parts)]:
            return True
    return False


def labels_of(props: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in ("metadata.labels", "spec.template.metadata.labels", "spec.selector.matchLabels"):
        labels = get_path(props, path) or {}
        if isinstance(labels, Mapping):
            out.update({str(k): str(v) for k, v in labels.items()})
    return out


def containers_of(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in as_list(get_path(props, "spec.template.spec.containers")) if isinstance(c, Mapping)]
