"""The checks behind each guardrail, as pure functions of a resource's props (or of the whole stack)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import PolicyResource

from .props import (
    ASG,
    DASK_DASHBOARD_PORT,
    DASK_SCHEDULER_PORT,
    DEPLOYMENT,
    DESIRED_FROM_LIVE_TAG,
    EKS_CLUSTER,
    HELM_RELEASE,
    IAM_POLICY_DOC_TYPES,
    IAM_ROLE,
    NODE_GROUP,
    READ_ONLY_VERBS,
    SUBNET,
    allow_list_ok,
    as_list,
    containers_of,
    get_path,
    ignores,
    labels_of,
    open_cidr,
    port_number,
    truthy,
)

# --------------------------------------------------------------------------------------------------
# Rule bodies (pure: props/opts in, violation messages out)
# --------------------------------------------------------------------------------------------------


def check_imdsv2(props: Mapping[str, Any]) -> list[str]:
    """IMDSv1 lets any SSRF in a pod read node credentials; tokens must be required."""
    meta = get_path(props, "metadataOptions") or {}
    if get_path(meta, "httpEndpoint") == "disabled":
        return []
    tokens = get_path(meta, "httpTokens")
    if tokens != "required":
        return [f"metadataOptions.httpTokens is {tokens!r}; set it to 'required' (IMDSv2 only)"]
    return []


def check_imds_hop_limit(props: Mapping[str, Any]) -> list[str]:
    """A pod's request to IMDS crosses one more network hop than the node's own, so a PUT response hop
    limit of 1 keeps the IMDSv2 token (and with it the node role's credentials) from every pod that is
    not on the host network; pods get AWS access through IRSA instead. Unset is a violation too: the
    instance then takes the AMI's default, which is 2 on the AL2023 EKS AMIs."""
    meta = get_path(props, "metadataOptions") or {}
    if get_path(meta, "httpEndpoint") == "disabled":
        return []
    limit = get_path(meta, "httpPutResponseHopLimit")
    # a wire number (the engine and mocks send floats), or its text; 1.5 is not 1
    if port_number(limit) != 1 or float(limit) != 1:
        return [
            f"metadataOptions.httpPutResponseHopLimit is {limit!r}; set it to 1 so pods cannot fetch an "
            "IMDSv2 token and the node role's credentials"
        ]
    return []


def check_node_group_launch_template(props: Mapping[str, Any]) -> list[str]:
    """Without its own launch template a managed node group gets EKS's default one, whose IMDS settings
    the program does not control (and this pack cannot see)."""
    lt = get_path(props, "launchTemplate") or {}
    if isinstance(lt, Mapping) and (lt.get("id") or lt.get("name")):
        return []
    return ["node group has no launchTemplate, so IMDSv2 is not enforced by the program"]


def check_launch_template_no_public_ip(props: Mapping[str, Any]) -> list[str]:
    """A launch template can hand nodes public IPs regardless of the subnet setting."""
    return [
        f"networkInterfaces[{i}].associatePublicIpAddress is true; nodes must stay private"
        for i, nic in enumerate(as_list(get_path(props, "networkInterfaces")))
        if isinstance(nic, Mapping) and truthy(nic.get("associatePublicIpAddress"))
    ]


def check_secrets_encryption(props: Mapping[str, Any]) -> list[str]:
    """Kubernetes Secrets (service-account tokens, Dask TLS keys) must be envelope-encrypted with KMS."""
    configs = [c for c in as_list(get_path(props, "encryptionConfig")) if isinstance(c, Mapping)]
    for cfg in configs:
        resources = [str(r) for r in as_list(cfg.get("resources"))]
        if "secrets" in resources and get_path(cfg, "provider.keyArn"):
            return []
    return ["encryptionConfig must encrypt 'secrets' with a KMS key (provider.keyArn)"]


def check_audit_logging(props: Mapping[str, Any]) -> list[str]:
    """Without the audit log nobody can tell who scaled, exec'd into or deleted what."""
    types = [str(t) for t in as_list(get_path(props, "enabledClusterLogTypes"))]
    if "audit" not in types:
        return [f"enabledClusterLogTypes {types} must include 'audit'"]
    return []


def check_public_endpoint(props: Mapping[str, Any]) -> list[str]:
    """A public API endpoint open to 0.0.0.0/0 (the AWS default when no CIDRs are given) invites
    credential-stuffing against the cluster; restrict it to known CIDRs or turn it off."""
    vpc = get_path(props, "vpcConfig") or {}
    public = get_path(vpc, "endpointPublicAccess")
    if public is False:
        return []
    cidrs = [str(c) for c in as_list(get_path(vpc, "publicAccessCidrs"))]
    if not cidrs:
        return ["vpcConfig.publicAccessCidrs is empty, so the public endpoint defaults to 0.0.0.0/0"]
    if any(open_cidr(c) for c in cidrs):
        return [f"vpcConfig.publicAccessCidrs {cidrs} opens the public endpoint to the internet"]
    return []


def _dask_ports(ports: Any) -> list[str]:
    found = []
    for p in as_list(ports):
        if not isinstance(p, Mapping):
            continue
        numbers = {port_number(p.get("port")), port_number(p.get("targetPort"))}
        name = f"{p.get('name', '')} {p.get('targetPort', '')}".lower()
        if DASK_DASHBOARD_PORT in numbers or "dashboard" in name:
            found.append("dashboard")
        if DASK_SCHEDULER_PORT in numbers or re.search(r"\b(tcp-comm|comm|scheduler)\b", name):
            found.append("scheduler")
    return sorted(set(found))


def check_service_exposure(props: Mapping[str, Any]) -> list[str]:
    """A LoadBalancer Service puts the Dask dashboard (and scheduler, which runs arbitrary code sent to
    it) on a cloud load balancer; only an explicit source allow-list makes that acceptable."""
    if get_path(props, "spec.type") != "LoadBalancer":
        return []
    exposed = _dask_ports(get_path(props, "spec.ports"))
    if not exposed:
        return []
    if allow_list_ok(get_path(props, "spec.loadBalancerSourceRanges")):
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
    default = get_path(props, "spec.defaultBackend.service")
    if isinstance(default, Mapping):
        backends.append(default)
    for rule in as_list(get_path(props, "spec.rules")):
        for path in as_list(get_path(rule, "http.paths")):
            svc = get_path(path, "backend.service")
            if isinstance(svc, Mapping):
                backends.append(svc)
    dask = [
        b
        for b in backends
        if port_number(get_path(b, "port.number")) in (DASK_DASHBOARD_PORT, DASK_SCHEDULER_PORT)
        or "dashboard" in str(get_path(b, "port.name", "")).lower()
    ]
    if not dask:
        return []
    annotations = get_path(props, "metadata.annotations") or {}
    for key in INGRESS_ALLOW_LIST_ANNOTATIONS:
        value = annotations.get(key) if isinstance(annotations, Mapping) else None
        if value and allow_list_ok([c.strip() for c in str(value).split(",")]):
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
    labels = labels_of(props)
    component = labels.get("app.kubernetes.io/component")
    if component is not None:
        dask = labels.get("app.kubernetes.io/name") == "dask" or "dask" in " ".join(labels.values()).lower()
        return component == "worker" and dask
    for c in containers_of(props):
        argv = [str(a) for a in as_list(c.get("command")) + as_list(c.get("args"))]
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
    low, high = port_number(get_path(props, lo)), port_number(get_path(props, hi))
    if low is not None and low == high:
        return []
    if ignores(ignore_changes, path):
        return []
    desired = port_number(get_path(props, path))
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
    for i, st in enumerate(as_list(document.get("Statement"))):
        if not isinstance(st, Mapping) or st.get("Effect") != "Allow":
            continue
        resources = [str(r) for r in as_list(st.get("Resource"))]
        if "*" not in resources or st.get("Condition"):
            continue
        if "NotAction" in st:
            out.append(f"Statement[{i}] allows NotAction on Resource '*' without a Condition")
            continue
        writes = [str(a) for a in as_list(st.get("Action")) if not _is_read_only(str(a))]
        if writes:
            sid = f" ({st['Sid']})" if st.get("Sid") else ""
            out.append(f"Statement[{i}]{sid} allows {sorted(writes)} on Resource '*' without a Condition")
    return out


def check_iam(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Only the write-on-* pattern is checked here; identity (IRSA `sub`) conditions are tested in infra."""
    docs: list[Any] = []
    if resource_type in IAM_POLICY_DOC_TYPES:
        docs.append(get_path(props, IAM_POLICY_DOC_TYPES[resource_type]))
    elif resource_type == IAM_ROLE:
        docs.extend(get_path(p, "policy") for p in as_list(get_path(props, "inlinePolicies")))
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
            tags = get_path(r.props, "tags") or {}
            if isinstance(tags, Mapping) and str(tags.get("kubernetes.io/role/internal-elb", "")) == "1":
                found[r.urn] = r
    return found


def check_node_subnets(resources: Sequence[PolicyResource]) -> list[tuple[str, str]]:
    """A node subnet that maps public IPs turns every node into an internet-facing host."""
    return [
        (s.urn, f"node subnet {s.name} has mapPublicIpOnLaunch=true")
        for s in node_subnets(resources).values()
        if truthy(get_path(s.props, "mapPublicIpOnLaunch"))
    ]


_MINOR = re.compile(r"^v?(\d+)\.(\d+)")


def _minor(version: Any) -> tuple[int, int] | None:
    m = _MINOR.match(str(version or ""))
    return (int(m[1]), int(m[2])) if m else None


def _ca_image_tags(r: PolicyResource) -> list[str | None]:
    """The image tag(s) a cluster-autoscaler install runs: Helm values or a plain Deployment."""
    if r.resource_type == HELM_RELEASE:
        chart = str(get_path(r.props, "chart") or "")
        if chart.rsplit("/", 1)[-1] != "cluster-autoscaler":
            return []
        return [get_path(r.props, "values.image.tag")]
    if r.resource_type == DEPLOYMENT:
        tags: list[str | None] = []
        for c in containers_of(r.props):
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
    want = _minor(get_path(cluster.props, "version"))
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
