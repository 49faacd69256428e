"""The adaptive-dask guardrails as CrossGuard policies.

Why a module of its own: `PolicyPack(...)` starts a gRPC server and blocks, so `policy/__main__.py` only
wires `build_policies()` into a pack, while tests import this module and call `policy.validate(...)`
directly. Every check reads camelCase wire names (the engine and the mocks both hand those over) and uses
`Mapping`/`Sequence`, never `dict`/`list`: at run time props arrive wrapped in pulumi-policy proxies.

Enforcement: strict stacks (prod) get MANDATORY everywhere; other stacks get ADVISORY for the security
hardening rules and MANDATORY for the rules whose violation breaks autoscaling (a deploy that resets
replicas or node counts, or a cluster-autoscaler that does not match the cluster, is wrong in any stack).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

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


def _get(obj: Any, path: str, default: Any = None) -> Any:
    """Follow a dotted camelCase path through Mappings (and single-element Sequences, which older
    provider schemas use for max-1 blocks such as `encryptionConfig`)."""
    cur = obj
    for part in path.split("."):
        if _is_seq(cur) and len(cur) == 1:
            cur = cur[0]
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def _is_seq(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if _is_seq(value) else [value]


def _truthy(value: Any) -> bool:
    """Booleans sometimes travel as strings (launch template network interfaces use "true")."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _port(value: Any) -> int | None:
    """An integer from a wire number (mocks and the engine send floats); None for names/absent."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _open_cidr(cidr: Any) -> bool:
    try:
        return ipaddress.ip_network(str(cidr).strip(), strict=False) in OPEN_CIDRS
    except ValueError:
        return False


def _allow_list_ok(ranges: Any) -> bool:
    """A real allow-list: non-empty and not the whole internet."""
    items = [str(r) for r in _as_list(ranges) if str(r).strip()]
    return bool(items) and not any(_open_cidr(r) for r in items)


def ignores(ignore_changes: Iterable[str], path: str) -> bool:
    """True if `path` (camelCase) or one of its parents is in ignoreChanges."""
    wanted = path.split(".")
    for entry in ignore_changes or ():
        parts = str(entry).split(".")
        if parts == wanted[: len(parts)]:
            return True
    return False


def _labels(props: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in ("metadata.labels", "spec.template.metadata.labels", "spec.selector.matchLabels"):
        labels = _get(props, path) or {}
        if isinstance(labels, Mapping):
            out.update({str(k): str(v) for k, v in labels.items()})
    return out


def _containers(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in _as_list(_get(props, "spec.template.spec.containers")) if isinstance(c, Mapping)]


# --------------------------------------------------------------------------------------------------
# Rule bodies (pure: props/opts in, violation messages out)
# --------------------------------------------------------------------------------------------------


def check_imdsv2(props: Mapping[str, Any]) -> list[str]:
    """IMDSv1 lets any SSRF in a pod read node credentials; tokens must be required."""
    meta = _get(props, "metadataOptions") or {}
    if _get(meta, "httpEndpoint") == "disabled":
        return []
    tokens = _get(meta, "httpTokens")
    if tokens != "required":
        return [f"metadataOptions.httpTokens is {tokens!r}; set it to 'required' (IMDSv2 only)"]
    return []


def check_node_group_launch_template(props: Mapping[str, Any]) -> list[str]:
    """Without its own launch template a managed node group gets EKS's default one, whose IMDS settings
    the program does not control (and this pack cannot see)."""
    lt = _get(props, "launchTemplate") or {}
    if isinstance(lt, Mapping) and (lt.get("id") or lt.get("name")):
        return []
    return ["node group has no launchTemplate, so IMDSv2 is not enforced by the program"]


def check_launch_template_no_public_ip(props: Mapping[str, Any]) -> list[str]:
    """A launch template can hand nodes public IPs regardless of the subnet setting."""
    return [
        f"networkInterfaces[{i}].associatePublicIpAddress is true; nodes must stay private"
        for i, nic in enumerate(_as_list(_get(props, "networkInterfaces")))
        if isinstance(nic, Mapping) and _truthy(nic.get("associatePublicIpAddress"))
    ]


def check_secrets_encryption(props: Mapping[str, Any]) -> list[str]:
    """Kubernetes Secrets (service-account tokens, Dask TLS keys) must be envelope-encrypted with KMS."""
    configs = [c for c in _as_list(_get(props, "encryptionConfig")) if isinstance(c, Mapping)]
    for cfg in configs:
        resources = [str(r) for r in _as_list(cfg.get("resources"))]
        if "secrets" in resources and _get(cfg, "provider.keyArn"):
            return []
    return ["encryptionConfig must encrypt 'secrets' with a KMS key (provider.keyArn)"]


def check_audit_logging(props: Mapping[str, Any]) -> list[str]:
    """Without the audit log nobody can tell who scaled, exec'd into or deleted what."""
    types = [str(t) for t in _as_list(_get(props, "enabledClusterLogTypes"))]
    if "audit" not in types:
        return [f"enabledClusterLogTypes {types} must include 'audit'"]
    return []


def check_public_endpoint(props: Mapping[str, Any]) -> list[str]:
    """A public API endpoint open to 0.0.0.0/0 (the AWS default when no CIDRs are given) invites
    credential-stuffing against the cluster; restrict it to known CIDRs or turn it off."""
    vpc = _get(props, "vpcConfig") or {}
    public = _get(vpc, "endpointPublicAccess")
    if public is False:
        return []
    cidrs = [str(c) for c in _as_list(_get(vpc, "publicAccessCidrs"))]
    if not cidrs:
        return ["vpcConfig.publicAccessCidrs is empty, so the public endpoint defaults to 0.0.0.0/0"]
    if any(_open_cidr(c) for c in cidrs):
        return [f"vpcConfig.publicAccessCidrs {cidrs} opens the public endpoint to the internet"]
    return []


def _dask_ports(ports: Any) -> list[str]:
    found = []
    for p in _as_list(ports):
        if not isinstance(p, Mapping):
            continue
        numbers = {_port(p.get("port")), _port(p.get("targetPort"))}
        name = f"{p.get('name', '')} {p.get('targetPort', '')}".lower()
        if DASK_DASHBOARD_PORT in numbers or "dashboard" in name:
            found.append("dashboard")
        if DASK_SCHEDULER_PORT in numbers or re.search(r"\b(tcp-comm|comm|scheduler)\b", name):
            found.append("scheduler")
    return sorted(set(found))


def check_service_exposure(props: Mapping[str, Any]) -> list[str]:
    """A LoadBalancer Service puts the Dask dashboard (and scheduler, which runs arbitrary code sent to
    it) on a cloud load balancer; only an explicit source allow-list makes that acceptable."""
    if _get(props, "spec.type") != "LoadBalancer":
        return []
    exposed = _dask_ports(_get(props, "spec.ports"))
    if not exposed:
        return []
    if _allow_list_ok(_get(props, "spec.loadBalancerSourceRanges")):
        return []
    return [
        f"LoadBalancer Service exposes the Dask {'/'.join(exposed)} without spec.loadBalancerSourceRanges "
        "(a non-empty list without 0.0.0.0/0)"
    ]


INGRESS_ALLOW_LIST_ANNOTATIONS = (
    "alb.ingress.kubernetes.io/inbound-cidrs",
    "nginx.ingress.kubernetes.io/whitelist-source-range",
    "nginx.ingress.kubernetes.io/allowlist-source-range",
)


def check_ingress_exposure(props: Mapping[str, Any]) -> list[str]:
    """An Ingress to the dashboard is the same exposure as a LoadBalancer; require a CIDR allow-list."""
    backends = []
    default = _get(props, "spec.defaultBackend.service")
    if isinstance(default, Mapping):
        backends.append(default)
    for rule in _as_list(_get(props, "spec.rules")):
        for path in _as_list(_get(rule, "http.paths")):
            svc = _get(path, "backend.service")
            if isinstance(svc, Mapping):
                backends.append(svc)
    dask = [
        b
        for b in backends
        if _port(_get(b, "port.number")) in (DASK_DASHBOARD_PORT, DASK_SCHEDULER_PORT)
        or "dashboard" in str(_get(b, "port.name", "")).lower()
    ]
    if not dask:
        return []
    annotations = _get(props, "metadata.annotations") or {}
    for key in INGRESS_ALLOW_LIST_ANNOTATIONS:
        value = annotations.get(key) if isinstance(annotations, Mapping) else None
        if value and _allow_list_ok([c.strip() for c in str(value).split(",")]):
            return []
    return [
        "Ingress routes to the Dask dashboard without an allow-list annotation "
        f"({', '.join(INGRESS_ALLOW_LIST_ANNOTATIONS)})"
    ]


def _runs_dask_worker(argv: Sequence[str]) -> bool:
    """The container's program is the worker CLI (not merely an argument naming the worker Deployment,
    as the scheduler's `--deployment dask-worker` does)."""
    head = [a.rsplit("/", 1)[-1] for a in argv[:3]]
    return (
        head[:2] == ["dask", "worker"] or head[:1] == ["dask-worker"] or "distributed.cli.dask_worker" in head
    )


def is_dask_worker_deployment(props: Mapping[str, Any]) -> bool:
    """The worker Deployment: by its `app.kubernetes.io/component` label when it has one, else by the
    program its containers run."""
    labels = _labels(props)
    component = labels.get("app.kubernetes.io/component")
    if component is not None:
        dask = labels.get("app.kubernetes.io/name") == "dask" or "dask" in " ".join(labels.values()).lower()
        return component == "worker" and dask
    for c in _containers(props):
        argv = [str(a) for a in _as_list(c.get("command")) + _as_list(c.get("args"))]
        if _runs_dask_worker(argv):
            return True
    return False


def check_worker_replicas(props: Mapping[str, Any], ignore_changes: Sequence[str]) -> list[str]:
    """The scheduler preload owns the worker count; without ignoreChanges every `pulumi up` would
    reset it (and with server-side apply even conflict with the scale subresource)."""
    if not is_dask_worker_deployment(props):
        return []
    if ignores(ignore_changes, "spec.replicas"):
        return []
    return [f"worker Deployment must ignore 'spec.replicas' (ignoreChanges is {list(ignore_changes)})"]


def check_node_group_desired_size(
    props: Mapping[str, Any], ignore_changes: Sequence[str], resource_type: str
) -> list[str]:
    """cluster-autoscaler owns desired sizes; a deploy that resets them terminates live nodes.

    A fixed-size group (minSize == maxSize, e.g. the system group) is exempt: nobody else can move its
    desired size, and ignoring it would stop a `size` change from ever applying. So is a node group that
    carries DESIRED_FROM_LIVE_TAG with a desired size inside its bounds: in a run that changes the bounds
    the program deliberately sends the live size, clamped, instead of the stale stored one."""
    if resource_type == NODE_GROUP:
        path, lo, hi = "scalingConfig.desiredSize", "scalingConfig.minSize", "scalingConfig.maxSize"
    else:
        path, lo, hi = "desiredCapacity", "minSize", "maxSize"
    low, high = _port(_get(props, lo)), _port(_get(props, hi))
    if low is not None and low == high:
        return []
    if ignores(ignore_changes, path):
        return []
    desired = _port(_get(props, path))
    tags = props.get("tags") or {}
    if (
        resource_type == NODE_GROUP
        and DESIRED_FROM_LIVE_TAG in tags
        and None not in (low, high, desired)
        and low <= desired <= high  # type: ignore[operator]
    ):
        return []
    hint = ""
    if any("_" in str(i) for i in ignore_changes or ()):
        hint = " (nested ignoreChanges paths must be camelCase)"
    return [f"must ignore '{path}' (ignoreChanges is {list(ignore_changes)}){hint}"]


def _is_read_only(action: str) -> bool:
    service, _, verb = action.partition(":")
    return bool(service) and verb.startswith(READ_ONLY_VERBS)


def iam_document_violations(document: Any) -> list[str]:
    """Allow statements that grant non-read actions on Resource "*" without any Condition.

    Read verbs (Describe/List/Get/BatchGet) on "*" are fine: many AWS APIs have no resource-level
    scoping for them. Writes on "*" must at least be narrowed by a Condition (e.g. a cluster tag)."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return [f"policy document is not JSON: {document[:60]!r}"]
    if not isinstance(document, Mapping):
        return []
    out = []
    for i, st in enumerate(_as_list(document.get("Statement"))):
        if not isinstance(st, Mapping) or st.get("Effect") != "Allow":
            continue
        resources = [str(r) for r in _as_list(st.get("Resource"))]
        if "*" not in resources or st.get("Condition"):
            continue
        if "NotAction" in st:
            out.append(f"Statement[{i}] allows NotAction on Resource '*' without a Condition")
            continue
        writes = [str(a) for a in _as_list(st.get("Action")) if not _is_read_only(str(a))]
        if writes:
            sid = f" ({st['Sid']})" if st.get("Sid") else ""
            out.append(f"Statement[{i}]{sid} allows {sorted(writes)} on Resource '*' without a Condition")
    return out


def check_iam(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Only the write-on-* pattern is checked here; identity (IRSA `sub`) conditions are tested in infra."""
    docs: list[Any] = []
    if resource_type in IAM_POLICY_DOC_TYPES:
        docs.append(_get(props, IAM_POLICY_DOC_TYPES[resource_type]))
    elif resource_type == IAM_ROLE:
        docs.extend(_get(p, "policy") for p in _as_list(_get(props, "inlinePolicies")))
    return [v for d in docs if d for v in iam_document_violations(d)]


# -- stack-wide rules -------------------------------------------------------------------------------


def _subnet_ids_deps(r: PolicyResource, key: str) -> list[PolicyResource]:
    deps = [d for d in r.property_dependencies.get(key, []) if d.resource_type == SUBNET]
    return deps or [d for d in r.dependencies if d.resource_type == SUBNET]


def node_subnets(resources: Sequence[PolicyResource]) -> dict[str, PolicyResource]:
    """Subnets nodes land in: those a node group / ASG takes its subnets from, plus subnets tagged for
    internal load balancers (the private tier by EKS convention)."""
    found: dict[str, PolicyResource] = {}
    for r in resources:
        if r.resource_type == NODE_GROUP:
            found.update({d.urn: d for d in _subnet_ids_deps(r, "subnetIds")})
        elif r.resource_type == ASG:
            found.update({d.urn: d for d in _subnet_ids_deps(r, "vpcZoneIdentifiers")})
        elif r.resource_type == SUBNET:
            tags = _get(r.props, "tags") or {}
            if isinstance(tags, Mapping) and str(tags.get("kubernetes.io/role/internal-elb", "")) == "1":
                found[r.urn] = r
    return found


def check_node_subnets(resources: Sequence[PolicyResource]) -> list[tuple[str, str]]:
    """A node subnet that maps public IPs turns every node into an internet-facing host."""
    return [
        (s.urn, f"node subnet {s.name} has mapPublicIpOnLaunch=true")
        for s in node_subnets(resources).values()
        if _truthy(_get(s.props, "mapPublicIpOnLaunch"))
    ]


_MINOR = re.compile(r"^v?(\d+)\.(\d+)")


def _minor(version: Any) -> tuple[int, int] | None:
    m = _MINOR.match(str(version or ""))
    return (int(m[1]), int(m[2])) if m else None


def _ca_image_tags(r: PolicyResource) -> list[str | None]:
    """The image tag(s) a cluster-autoscaler install runs: Helm values or a plain Deployment."""
    if r.resource_type == HELM_RELEASE:
        chart = str(_get(r.props, "chart") or "")
        if chart.rsplit("/", 1)[-1] != "cluster-autoscaler":
            return []
        return [_get(r.props, "values.image.tag")]
    if r.resource_type == DEPLOYMENT:
        tags: list[str | None] = []
        for c in _containers(r.props):
            image = str(c.get("image", ""))
            if "cluster-autoscaler" in image.rsplit("/", 1)[-1]:
                tags.append(image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None)
        return tags
    return []


def check_ca_version(resources: Sequence[PolicyResource]) -> list[tuple[str | None, str]]:
    """cluster-autoscaler only supports the Kubernetes minor it was built for (its README's table);
    the chart's default tag is the newest CA, which silently breaks on older clusters."""
    clusters = [r for r in resources if r.resource_type == EKS_CLUSTER]
    installs = [(r, t) for r in resources for t in _ca_image_tags(r)]
    if not installs:
        return []
    if len(clusters) != 1:
        return [(None, f"expected one EKS cluster next to cluster-autoscaler, found {len(clusters)}")]
    cluster = clusters[0]
    want = _minor(_get(cluster.props, "version"))
    if want is None:
        return [(cluster.urn, "cluster version is not pinned, so the cluster-autoscaler minor cannot match")]
    out = []
    for r, tag in installs:
        got = _minor(tag)
        if got is None:
            out.append(
                (r.urn, f"cluster-autoscaler image tag {tag!r} is not pinned to v{want[0]}.{want[1]}.x")
            )
        elif got != want:
            out.append(
                (r.urn, f"cluster-autoscaler {tag} does not match cluster version {want[0]}.{want[1]}")
            )
    return out


# --------------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------------

ResourceCheck = Callable[[ResourceValidationArgs], list[str]]
StackCheck = Callable[[Sequence[PolicyResource]], list[tuple[str | None, str]]]


def _namespace(props: Mapping[str, Any]) -> str:
    return str(_get(props, "metadata.namespace", "default"))


def _dask_deployments(
    resources: Sequence[PolicyResource], component: str | None = None
) -> list[PolicyResource]:
    out = []
    for r in resources:
        if r.resource_type != DEPLOYMENT:
            continue
        labels = _labels(r.props)
        is_dask = labels.get("app.kubernetes.io/name") == "dask" or is_dask_worker_deployment(r.props)
        if is_dask and (component is None or labels.get("app.kubernetes.io/component") == component):
            out.append(r)
    return out


def is_default_deny(props: Mapping[str, Any]) -> bool:
    """Selects every pod, governs Ingress, allows nothing."""
    selector = _get(props, "spec.podSelector") or {}
    return (
        not _get(selector, "matchLabels")
        and not _get(selector, "matchExpressions")
        and "Ingress" in _as_list(_get(props, "spec.policyTypes"))
        and not _as_list(_get(props, "spec.ingress"))
    )


def check_dask_default_deny(resources: Sequence[PolicyResource]) -> list[tuple[str | None, str]]:
    """A connection to the scheduler runs code in it: every namespace with Dask pods denies ingress by
    default, so only the NetworkPolicies that name peers let anything in."""
    denied = {
        _namespace(r.props)
        for r in resources
        if r.resource_type == NETWORK_POLICY and is_default_deny(r.props)
    }
    return [
        (
            d.urn,
            f"namespace {_namespace(d.props)!r} runs Dask pods but has no default-deny ingress NetworkPolicy",
        )
        for d in _dask_deployments(resources)
        if _namespace(d.props) not in denied
    ]


def check_vpc_cni_network_policy(props: Mapping[str, Any]) -> list[str]:
    """Without `enableNetworkPolicy`, the EKS vpc-cni addon stores NetworkPolicies and enforces none."""
    if props.get("addonName") != "vpc-cni":
        return []
    try:
        values = json.loads(props.get("configurationValues") or "{}")
    except (TypeError, ValueError):
        return ["vpc-cni configurationValues is not JSON"]
    if str(values.get("enableNetworkPolicy", "")).lower() != "true":
        return [
            'vpc-cni must set configurationValues {"enableNetworkPolicy": "true"}: nothing enforces policies'
        ]
    return []


def check_scheduler_admission(resources: Sequence[PolicyResource]) -> list[tuple[str | None, str]]:
    """The scheduler holds a token that can scale and delete pods; a ValidatingAdmissionPolicy bound with
    Deny and matched on exactly its service account narrows that to scaling."""
    policies = {
        str(_get(r.props, "metadata.name")): r for r in resources if r.resource_type == ADMISSION_POLICY
    }
    bindings = [r for r in resources if r.resource_type == ADMISSION_BINDING]
    found: list[tuple[str | None, str]] = []
    for scheduler in _dask_deployments(resources, "scheduler"):
        account = _get(scheduler.props, "spec.template.spec.serviceAccountName", "default")
        user = f"system:serviceaccount:{_namespace(scheduler.props)}:{account}"
        matching = [
            p
            for p in policies.values()
            if any(
                user in str(c.get("expression", "")) for c in _as_list(_get(p.props, "spec.matchConditions"))
            )
        ]
        bound = [
            b
            for b in bindings
            if str(_get(b.props, "spec.policyName"))
            in {str(_get(p.props, "metadata.name")) for p in matching}
        ]
        if not bound:
            found.append(
                (scheduler.urn, f"no ValidatingAdmissionPolicy is bound for the scheduler's account {user}")
            )
        for binding in bound:
            if "Deny" not in _as_list(_get(binding.props, "spec.validationActions")):
                found.append((binding.urn, f"the scheduler's admission policy binding must Deny ({user})"))
    return found


@dataclass(frozen=True)
class Rule:
    """One guardrail and how hard it bites in strict (prod) and other stacks."""

    name: str
    description: str
    strict: EnforcementLevel
    lenient: EnforcementLevel
    resource_types: frozenset[str] = frozenset()
    resource_check: ResourceCheck | None = None
    stack_check: StackCheck | None = None

    def build(self, strict: bool) -> Policy:
        level = self.strict if strict else self.lenient
        if self.stack_check is not None:
            return StackValidationPolicy(
                name=self.name, description=self.description, validate=self._stack, enforcement_level=level
            )
        return ResourceValidationPolicy(
            name=self.name, description=self.description, validate=self._resource, enforcement_level=level
        )

    def _resource(self, args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type not in self.resource_types:
            return
        assert self.resource_check is not None
        for message in self.resource_check(args):
            report(message, None)

    def _stack(self, args: StackValidationArgs, report: ReportViolation) -> None:
        assert self.stack_check is not None
        for urn, message in self.stack_check(args.resources):
            report(message, urn)


M, A = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY

RULES: tuple[Rule, ...] = (
    Rule(
        "imdsv2-required",
        "Launch templates require IMDSv2 (httpTokens=required), give no public IPs; node groups use one.",
        M,
        A,
        frozenset({LAUNCH_TEMPLATE, NODE_GROUP}),
        lambda a: (
            check_node_group_launch_template(a.props)
            if a.resource_type == NODE_GROUP
            else check_imdsv2(a.props) + check_launch_template_no_public_ip(a.props)
        ),
    ),
    Rule(
        "node-subnets-private",
        "Subnets that node groups use do not map public IPs on launch.",
        M,
        A,
        stack_check=check_node_subnets,
    ),
    Rule(
        "eks-secrets-encryption",
        "EKS envelope-encrypts Kubernetes Secrets with a KMS key.",
        M,
        A,
        frozenset({EKS_CLUSTER}),
        lambda a: check_secrets_encryption(a.props),
    ),
    Rule(
        "eks-audit-logging",
        "EKS control-plane audit logging is on.",
        M,
        A,
        frozenset({EKS_CLUSTER}),
        lambda a: check_audit_logging(a.props),
    ),
    Rule(
        "eks-public-endpoint-restricted",
        "The EKS public API endpoint is off or limited to explicit CIDRs (never 0.0.0.0/0).",
        M,
        A,
        frozenset({EKS_CLUSTER}),
        lambda a: check_public_endpoint(a.props),
    ),
    Rule(
        "dask-dashboard-allow-list",
        "No LoadBalancer/Ingress exposes the Dask dashboard or scheduler without a source allow-list.",
        M,
        A,
        frozenset({SERVICE, INGRESS}),
        lambda a: (
            check_service_exposure(a.props) if a.resource_type == SERVICE else check_ingress_exposure(a.props)
        ),
    ),
    Rule(
        "iam-no-unconditioned-write-on-star",
        "IAM policies grant write actions on Resource '*' only under a Condition.",
        M,
        A,
        frozenset({*IAM_POLICY_DOC_TYPES, IAM_ROLE}),
        lambda a: check_iam(a.resource_type, a.props),
    ),
    Rule(
        "dask-worker-replicas-unmanaged",
        "The Dask worker Deployment ignores spec.replicas: the scheduler preload owns the count.",
        M,
        M,
        frozenset({DEPLOYMENT}),
        lambda a: check_worker_replicas(a.props, list(a.opts.ignore_changes or [])),
    ),
    Rule(
        "nodegroup-desired-size-ignored",
        "Autoscaled node groups (minSize < maxSize) ignore their desired size: cluster-autoscaler owns it.",
        M,
        M,
        frozenset({NODE_GROUP, ASG}),
        lambda a: check_node_group_desired_size(a.props, list(a.opts.ignore_changes or []), a.resource_type),
    ),
    Rule(
        "cluster-autoscaler-matches-cluster",
        "The cluster-autoscaler image minor version equals the EKS cluster minor version.",
        M,
        M,
        stack_check=check_ca_version,
    ),
    Rule(
        "dask-namespace-default-deny",
        "Every namespace running Dask pods has a default-deny ingress NetworkPolicy.",
        M,
        A,
        stack_check=check_dask_default_deny,
    ),
    Rule(
        "vpc-cni-enforces-network-policy",
        "The EKS vpc-cni addon enforces NetworkPolicies (configurationValues enableNetworkPolicy).",
        M,
        A,
        frozenset({ADDON}),
        lambda a: check_vpc_cni_network_policy(a.props),
    ),
    Rule(
        "dask-scheduler-admission-policy",
        "A ValidatingAdmissionPolicy bound with Deny narrows the Dask scheduler's account to scaling.",
        M,
        A,
        stack_check=check_scheduler_admission,
    ),
)

RULE_NAMES: tuple[str, ...] = tuple(r.name for r in RULES)
