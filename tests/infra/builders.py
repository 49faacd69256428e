"""Settings built directly for tests of the Kubernetes layer's config and components (no stack file)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import MappingProxyType

from infra.config.kubernetes import AUTOSCALER_DEFAULTS, DASK_DEFAULTS, parse_autoscaler, parse_dask
from infra.config.reader import Section, decode_json
from infra.config.settings import (
    AutoscalerSettings,
    AwsConfig,
    ClusterConfig,
    DaskSettings,
    NetworkConfig,
    SystemNodeGroupConfig,
    WorkerGroupConfig,
)
from infra.facts.placement import Taint

DASK_KEY, AUTOSCALER_KEY = "adaptive-dask:dask", "adaptive-dask:autoscaler"


def group(
    name: str,
    instance_types: Sequence[str],
    capacity_type: str = "ON_DEMAND",
    max_size: int = 10,
    disk_gib: int = 50,
    taints: Sequence[Taint] = (),
    index: int = 0,
) -> WorkerGroupConfig:
    return WorkerGroupConfig(
        name=name,
        instance_types=tuple(instance_types),
        capacity_type=capacity_type,
        min_size=0,
        max_size=max_size,
        disk_gib=disk_gib,
        labels=MappingProxyType({}),
        taints=tuple(taints),
        key=f"adaptive-dask:workerGroups[{index}]",
    )


def aws(
    groups: Sequence[WorkerGroupConfig], version: str = "1.35", system_instance_type: str = "t3.medium"
) -> AwsConfig:
    """An AwsConfig around the given worker groups (their keys renumbered by position)."""
    numbered = tuple(
        WorkerGroupConfig(**{**g.__dict__, "key": f"adaptive-dask:workerGroups[{i}]"})
        for i, g in enumerate(groups)
    )
    return AwsConfig(
        region="us-east-1",
        network=NetworkConfig("10.0.0.0/16", 2, "single", False, 30),
        cluster=ClusterConfig(
            version,
            True,
            ("0.0.0.0/0",),
            True,
            (),
            30,
            (),
            True,
            "172.20.0.0/16",
            "STANDARD",
            MappingProxyType({}),
            None,
        ),
        system=SystemNodeGroupConfig(system_instance_type, 2, 30),
        workers=numbered,
    )


def section(key: str, raw: str | dict | None, defaults: dict) -> Section:
    value = json.dumps(raw) if isinstance(raw, dict) else raw
    return Section(key, decode_json(key, value, {}), defaults)


def dask(
    raw: str | dict | None,
    *,
    target: str = "aws",
    cluster: AwsConfig | None = None,
    namespace: str = "adask-dev",
    production: bool = False,
) -> DaskSettings:
    """`adaptive-dask:dask` as the CLI hands it (JSON text, a dict, or None) for a target."""
    return parse_dask(
        section(DASK_KEY, raw, DASK_DEFAULTS),
        target=target,
        aws=cluster,
        default_namespace=namespace,
        production=production,
    )


def autoscaler(raw: str | dict | None, cluster: AwsConfig) -> AutoscalerSettings:
    return parse_autoscaler(section(AUTOSCALER_KEY, raw, AUTOSCALER_DEFAULTS), aws=cluster)
