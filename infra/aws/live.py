"""What the program reads from the live AWS account before it registers any AWS resource.

Why: some choices depend on the account, not only on the config - which zone *names* map to zone IDs
EKS accepts, who is deploying, how large cluster-autoscaler has made each node group, and whether EKS
left a control-plane log group behind after an earlier cluster of this name was deleted. Reading them
with synchronous invokes through the explicit provider (a provider creates nothing in AWS) lets a bad
combination stop `pulumi preview`/`up` with one `ConfigError` before the VPC exists. The decisions are
pure functions here and tested directly; `read_live_facts` is the only I/O.

Every read is permitted by AWS's `ReadOnlyAccess`, so a preview role sees the same facts as a deploy role.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import pulumi
import pulumi_aws as aws

from infra.aws.budget import placeholder_email_error
from infra.config.aws import role_name_key
from infra.config.reader import PROJECT
from infra.config.settings import Settings, WorkerGroupConfig
from infra.errors import ConfigError, LiveStateError

# Zone IDs where EKS refuses to place a control plane (UnsupportedAvailabilityZoneException). Zone
# *names* map to different IDs in every account, so only IDs can be excluded. Sources: the EKS user
# guide's subnet requirements and eksctl's avoid-list (cnn1-az4, weaveworks/eksctl#3916).
EKS_UNSUPPORTED_ZONE_IDS = ("use1-az3", "usw1-az2", "cac1-az3", "cnn1-az4")

# Managed node groups are auto-named `<logical name>-<7 random characters>` by Pulumi.
_AUTONAME_SUFFIX = r"-[a-z0-9]{7}"


@dataclass(frozen=True)
class LiveNodeGroup:
    name: str
    min_size: int
    max_size: int
    desired_size: int


@dataclass(frozen=True)
class LiveFacts:
    zones: tuple[str, ...]  # the zone names to use, in order, exactly network.azCount of them
    account_id: str  # the account the provider deploys into
    deployer_arn: str  # the IAM role/user ARN behind the caller (an STS session mapped to its role)
    node_groups: Mapping[str, LiveNodeGroup]  # by worker group name; empty before the first `up`


# -------------------------------------------------------------------------------------- pure decisions


def choose_zones(
    names: Sequence[str], ids: Sequence[str], az_count: int, region: str, pinned_ids: Sequence[str] = ()
) -> tuple[str, ...]:
    """Zone names for the subnets: those of the pinned zone IDs in order, else the first `az_count` usable
    zones; a ConfigError naming the key when a pinned zone is not usable or too few zones exist."""
    by_id = dict(zip(ids, names, strict=True))
    if pinned_ids:
        for i, zone_id in enumerate(pinned_ids):
            if zone_id not in by_id:
                raise ConfigError(
                    f"{PROJECT}:network.zoneIds[{i}]",
                    zone_id,
                    f"not a zone EKS accepts in {region} now; usable: {', '.join(ids) or 'none'} "
                    f"(zone IDs {', '.join(EKS_UNSUPPORTED_ZONE_IDS)} are excluded)",
                )
        return tuple(by_id[z] for z in pinned_ids)
    if az_count > len(names):
        raise ConfigError(
            f"{PROJECT}:network.azCount",
            az_count,
            f"{region} offers only {len(names)} availability zones EKS accepts "
            f"({', '.join(names) or 'none'}; zone IDs {', '.join(EKS_UNSUPPORTED_ZONE_IDS)} are excluded)",
        )
    return tuple(names[:az_count])


# AWS's documentation account: the committed stack files' admin ARNs use it as a placeholder.
PLACEHOLDER_ACCOUNT = "111122223333"


def placeholder_admin_error(
    admin_arns: Sequence[str], account_id: str, key: str = "adminArns"
) -> ConfigError | None:
    """An admin ARN still in the placeholder account, deployed into another account: refused at preview,
    before a first `up` spends ~20 minutes on the VPC and cluster and then fails on the access entry."""
    if account_id == PLACEHOLDER_ACCOUNT:
        return None
    for i, arn in enumerate(admin_arns):
        if arn.split(":")[4:5] == [PLACEHOLDER_ACCOUNT]:
            return ConfigError(
                f"{PROJECT}:cluster.{key}[{i}]",
                arn,
                f"is the stack file's placeholder (account {PLACEHOLDER_ACCOUNT}); this deploy runs in "
                f"account {account_id}: name your own role, e.g. arn:aws:iam::{account_id}:role/<name>",
            )
    return None


def deployer_entry_needed(deployer_arn: str, deployer_admin: bool, admin_arns: Sequence[str]) -> bool:
    """One cluster-admin entry per principal: none for the deployer when `adminArns` already lists it."""
    listed = {role_name_key(a) for a in admin_arns}
    return deployer_admin and role_name_key(deployer_arn) not in listed


def deployer_without_access(deployer_arn: str, deployer_admin: bool, admin_arns: Sequence[str]) -> bool:
    """True when nothing in this stack gives the deploying identity access to the cluster."""
    listed = {role_name_key(a) for a in admin_arns}
    return not deployer_admin and role_name_key(deployer_arn) not in listed


def node_group_logical_name(cluster_name: str, group: str) -> str:
    """The logical (Pulumi) name of a node group; the physical name adds the auto-name suffix."""
    return f"{cluster_name}-{group}"


def match_node_groups(cluster_name: str, groups: Sequence[str], live_names: Sequence[str]) -> dict[str, str]:
    """Worker group name -> live EKS node group name, recognised by the auto-name pattern."""
    found: dict[str, str] = {}
    for group in groups:
        pattern = re.compile(re.escape(node_group_logical_name(cluster_name, group)) + _AUTONAME_SUFFIX + "$")
        matches = sorted(n for n in live_names if pattern.match(n))
        if matches:
            found[group] = matches[-1]  # a replacement briefly leaves two; the newer name sorts anywhere
    return found


@dataclass(frozen=True)
class Scaling:
    """What the program sends for a worker group's scaling config, and whether desiredSize is ignored."""

    min_size: int
    max_size: int
    desired_size: int
    ignore_desired: bool


def worker_scaling(group: WorkerGroupConfig, live: LiveNodeGroup | None) -> Scaling:
    """cluster-autoscaler owns the desired size, so Pulumi normally ignores it. But when the bounds change,
    the update carries a desired size too - the one stored at the last update, stale by now - and EKS
    either refuses it (outside the new bounds) or applies it, resizing the group under running workers.
    So in a run that changes the bounds, send the *live* desired size, clamped into the new bounds."""
    if live is None:  # first creation: start at the floor
        return Scaling(group.min_size, group.max_size, group.min_size, ignore_desired=True)
    if (live.min_size, live.max_size) == (group.min_size, group.max_size):
        return Scaling(group.min_size, group.max_size, live.desired_size, ignore_desired=True)
    desired = min(max(live.desired_size, group.min_size), group.max_size)
    return Scaling(group.min_size, group.max_size, desired, ignore_desired=False)


def orphaned_log_group_error(
    name: str, tags: Mapping[str, str], stack: str, region: str
) -> LiveStateError | None:
    """EKS keeps delivering control-plane logs for a while after its cluster is deleted and re-creates
    `/aws/eks/<name>/cluster` (untagged, never expiring); creating the stack again would then fail half-way
    with ResourceAlreadyExistsException. A group without this stack's tags is that leftover. It cannot be
    adopted instead: an import must match the program's inputs (retention, tags), and this one does not."""
    if tags.get("Project") == PROJECT and tags.get("Stack") == stack:
        return None
    return LiveStateError(
        f"the log group {name} already exists",
        f"it was not created by stack {stack!r} (EKS re-creates it from late log deliveries after a cluster "
        "is deleted), and the cluster's log group must be created by the stack",
        delete_log_group_command(name, region),
    )


def delete_log_group_command(name: str, region: str) -> str:
    return f"aws logs delete-log-group --region {region} --log-group-name {name}"


# -------------------------------------------------------------------------------------- the reads


def _invoke(provider: aws.Provider) -> pulumi.InvokeOptions:
    return pulumi.InvokeOptions(provider=provider)


def _usable_zones(provider: aws.Provider) -> tuple[list[str], list[str]]:
    """(names, zone IDs) of the zones EKS accepts, in the same order."""
    zones = aws.get_availability_zones(
        state="available",
        exclude_zone_ids=list(EKS_UNSUPPORTED_ZONE_IDS),
        filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
        opts=_invoke(provider),
    )
    return list(zones.names), list(zones.zone_ids)


def _caller(provider: aws.Provider) -> tuple[str, str]:
    """(account id, deployer ARN). An assumed role calls as an STS session ARN; access entries need the
    IAM role ARN behind it."""
    caller = aws.get_caller_identity(opts=_invoke(provider))
    return caller.account_id, aws.iam.get_session_context(arn=caller.arn, opts=_invoke(provider)).issuer_arn


def _live_node_groups(settings: Settings, provider: aws.Provider) -> dict[str, LiveNodeGroup]:
    assert settings.aws is not None
    if settings.name not in aws.eks.get_clusters(opts=_invoke(provider)).names:
        return {}
    live_names = aws.eks.get_node_groups(cluster_name=settings.name, opts=_invoke(provider)).names
    matched = match_node_groups(settings.name, [g.name for g in settings.aws.workers], live_names)
    found = {}
    for group, node_group_name in matched.items():
        ng = aws.eks.get_node_group(
            cluster_name=settings.name, node_group_name=node_group_name, opts=_invoke(provider)
        )
        scaling = ng.scaling_configs[0]
        found[group] = LiveNodeGroup(
            node_group_name, scaling.min_size, scaling.max_size, scaling.desired_size
        )
    return found


def _check_log_group(settings: Settings, provider: aws.Provider, log_group: str) -> None:
    assert settings.aws is not None
    existing = aws.cloudwatch.get_log_groups(log_group_name_prefix=log_group, opts=_invoke(provider))
    if log_group not in existing.log_group_names:
        return
    found = aws.cloudwatch.get_log_group(name=log_group, opts=_invoke(provider))
    error = orphaned_log_group_error(log_group, found.tags or {}, settings.stack, settings.aws.region)
    if error is not None:
        raise error


def read_live_facts(settings: Settings, provider: aws.Provider, log_group: str) -> LiveFacts:
    """All live reads, in one place; raises ConfigError before any AWS resource is registered."""
    cfg = settings.aws
    assert cfg is not None, "live facts are read for the aws target only"
    names, ids = _usable_zones(provider)
    zones = choose_zones(names, ids, cfg.network.az_count, cfg.region, cfg.network.zone_ids)
    if cfg.cluster.log_types:
        _check_log_group(settings, provider, log_group)
    account_id, deployer = _caller(provider)
    for key, arns in (("adminArns", cfg.cluster.admin_arns), ("previewArns", cfg.cluster.preview_arns)):
        placeholder = placeholder_admin_error(arns, account_id, key)
        if placeholder is not None:
            raise placeholder
    if settings.budget is not None:
        email = placeholder_email_error(settings.budget.emails, account_id, PLACEHOLDER_ACCOUNT)
        if email is not None:
            raise email
    if deployer_without_access(deployer, cfg.cluster.deployer_admin, cfg.cluster.admin_arns):
        pulumi.log.warn(
            f"{PROJECT}:cluster.deployerAdmin is false and {deployer} is not in cluster.adminArns: this "
            "identity gets no access entry, so it can apply the Kubernetes layer only through an entry made "
            "outside this stack"
        )
    node_groups = MappingProxyType(_live_node_groups(settings, provider))
    return LiveFacts(zones=zones, account_id=account_id, deployer_arn=deployer, node_groups=node_groups)
