"""What the Kubernetes layer needs to know about each worker pool, derived from the same pure functions
that label and taint the node groups (so selectors and tolerations cannot drift from the nodes)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from infra.config import Taint, WorkerGroupConfig
from infra.tags import POOL_LABEL, SYSTEM_POOL, worker_labels, worker_taints


@dataclass(frozen=True)
class WorkerPool:
    name: str
    node_selector: Mapping[str, str]  # select exactly this pool's nodes
    labels: Mapping[str, str]  # every label its nodes carry (configured + pool label)
    tolerations: tuple[Taint, ...]  # every taint its nodes carry: Dask worker pods must tolerate them all
    instance_types: tuple[str, ...]
    capacity_type: str
    min_nodes: int
    max_nodes: int
    disk_gib: int


def worker_pool(group: WorkerGroupConfig) -> WorkerPool:
    return WorkerPool(
        name=group.name,
        node_selector=MappingProxyType({POOL_LABEL: group.name}),
        labels=MappingProxyType(worker_labels(group)),
        tolerations=worker_taints(group),
        instance_types=group.instance_types,
        capacity_type=group.capacity_type,
        min_nodes=group.min_size,
        max_nodes=group.max_size,
        disk_gib=group.disk_gib,
    )


def system_node_selector() -> dict[str, str]:
    """Where the scheduler, cluster-autoscaler and other long-lived system pods belong."""
    return {POOL_LABEL: SYSTEM_POOL}
