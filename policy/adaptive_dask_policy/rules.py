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

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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

from .checks import (
    check_audit_logging,
    check_ca_version,
    check_iam,
    check_imds_hop_limit,
    check_imdsv2,
    check_ingress_exposure,
    check_launch_template_no_public_ip,
    check_node_group_desired_size,
    check_node_group_launch_template,
    check_node_subnets,
    check_public_endpoint,
    check_secrets_encryption,
    check_service_exposure,
    check_worker_replicas,
)
from .fence_checks import (
    check_dask_default_deny,
    check_dask_mutual_tls,
    check_scheduler_admission,
    check_vpc_cni_network_policy,
)
from .props import (
    ADDON,
    ASG,
    DEPLOYMENT,
    EKS_CLUSTER,
    IAM_POLICY_DOC_TYPES,
    IAM_ROLE,
    INGRESS,
    LAUNCH_TEMPLATE,
    NODE_GROUP,
    SERVICE,
)

ResourceCheck = Callable[[ResourceValidationArgs], list[str]]
StackCheck = Callable[[Sequence[PolicyResource]], list[tuple[str | None, str]]]


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
        "imds-hop-limit-one",
        "Launch templates set metadataOptions.httpPutResponseHopLimit to 1: pods cannot reach the node role.",
        M,
        A,
        frozenset({LAUNCH_TEMPLATE}),
        lambda a: check_imds_hop_limit(a.props),
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
        "A ValidatingAdmissionPolicy that fails closed and has validations, bound with Deny, narrows the "
        "Dask scheduler's account to scaling.",
        M,
        A,
        stack_check=check_scheduler_admission,
    ),
    Rule(
        "dask-mutual-tls",
        "Every Dask pod requires encryption with the stack's CA; the scheduler listens on tls://.",
        M,
        A,
        frozenset({DEPLOYMENT}),
        lambda a: check_dask_mutual_tls(a.props),
    ),
)

RULE_NAMES: tuple[str, ...] = tuple(r.name for r in RULES)
