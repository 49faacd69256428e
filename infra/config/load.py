"""`load_settings()`: the whole config, read and validated once, inside the program (never at import)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

import pulumi

from infra.aws.tags import annotation_unsafe_tag
from infra.config.aws import (
    DEFAULT_REGION,
    EBS_CSI_DRIVER,
    POD_IDENTITY_AGENT,
    check_pinned,
    parse_aws,
    parse_tags,
)
from infra.config.budget import parse_budget
from infra.config.kubernetes import parse_kubernetes
from infra.config.node_groups import check_node_group_names
from infra.config.reader import (
    PROJECT,
    ConfigReader,
    Field,
    check_provider_keys,
    check_unknown_keys,
    project_config,
    stack_config,
)
from infra.config.settings import Settings

TARGETS = ("aws", "local")
DEFAULT_TARGET = "aws"
DEFAULT_PRODUCTION = False
DEFAULT_NAME_PREFIX = "adask"
_NAME_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


def stack_name(prefix_field: Field, stack: str) -> str:
    """`<namePrefix>-<stack>`: the cluster name and the root of every physical name (40 characters)."""
    prefix = prefix_field.string()
    if not _NAME_PREFIX_RE.match(prefix):
        raise prefix_field.fail("must match [a-z][a-z0-9-]{0,19}")
    safe_stack = re.sub(r"[^a-z0-9-]", "-", stack.lower())
    return f"{prefix}-{safe_stack}"[:40].rstrip("-")


def check_annotation_tags(cfg: ConfigReader, tags: Mapping[str, str]) -> None:
    """The dashboard's load balancer is tagged through a `k=v,k=v` annotation: a tag with ',' or '=' in it
    would be split into wrong tags there, so it is refused up front (only when that load balancer exists)."""
    bad = annotation_unsafe_tag(tags)
    if bad is not None:
        raise Field(f"{cfg.full_key('tags')}.{bad}", tags[bad]).fail(
            "must not contain ',' or '=' (key or value) while dask.dashboardAllowedCidrs is set: the "
            "dashboard's load balancer takes the tags as a 'k=v,k=v' annotation"
        )


def load_settings(reader_factory: Callable[[str], ConfigReader] = ConfigReader) -> Settings:
    """Read and validate the whole config; a bad value raises ConfigError before anything is registered."""
    check_unknown_keys(project_config())
    check_provider_keys(stack_config())
    cfg = reader_factory(PROJECT)
    target = cfg.raw("target", DEFAULT_TARGET).choice(TARGETS)
    production = cfg.raw("production", DEFAULT_PRODUCTION).boolean()
    stack = pulumi.get_stack()
    prefix_field = cfg.raw("namePrefix", DEFAULT_NAME_PREFIX)
    name = stack_name(prefix_field, stack)
    tags = {"Project": PROJECT, "Stack": stack, "ManagedBy": "pulumi", **parse_tags(cfg.json("tags", {}))}
    budget = parse_budget(cfg, target)
    aws = None
    if target != "aws" and cfg.is_set("images"):
        raise cfg.raw("images", None).fail(
            "needs target aws (an ECR repository); other targets pull from any registry"
        )
    if target == "aws":
        aws = parse_aws(cfg, reader_factory("aws").raw("region", DEFAULT_REGION), production)
        check_node_group_names(name, aws.workers)
    dask, autoscaler, kube_context = parse_kubernetes(
        cfg, target=target, aws=aws, default_namespace=name, production=production
    )
    if aws is not None:
        dask = dataclasses.replace(dask, aws_tags=MappingProxyType(tags))
        if dask.dashboard_cidrs:
            check_annotation_tags(cfg, tags)
    if aws is not None and production and dask.data_access.role_needed:
        check_pinned(aws.cluster.addon_versions, POD_IDENTITY_AGENT, "dask.dataBuckets / workerPolicyArns")
    if aws is not None and production and dask.jupyter.enabled:
        for addon in (EBS_CSI_DRIVER, POD_IDENTITY_AGENT):
            check_pinned(aws.cluster.addon_versions, addon, "dask.jupyter.enabled")
    return Settings(
        project=PROJECT,
        stack=stack,
        target=target,
        production=production,
        name_prefix=prefix_field.string(),
        name=name,
        tags=MappingProxyType(tags),
        aws=aws,
        dask=dask,
        autoscaler=autoscaler,
        kube_context=kube_context,
        budget=budget,
    )
