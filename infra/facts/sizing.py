"""Worker and scheduler sizing arithmetic, pure: what fits a node, per worker, and on its disk.

Config validation (`infra.config.kubernetes`) calls these and names the offending key; the numbers live
here so they can be tested on their own and read in one place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from infra.facts.instance_types import Resources, pod_capacity

MIN_WORKER_MEMORY_MIB = 1024
MIN_WORKER_CPU_MILLICORES = 250
MIN_SCRATCH_MIB = 1024
DEFAULT_SCRATCH_MIB = 10 * 1024
# The nanny process and the preload's HTTP handler live in the worker container's cgroup too, so Dask's
# own memory limit (which drives spilling, pausing and the nanny's restart at 95%) sits below the
# container limit: Dask reacts before the kernel's OOM killer does.
NANNY_OVERHEAD_MIB = 256
# The root volume also holds the images, logs and the kubelet's 10% nodefs eviction margin.
SCRATCH_DISK_FRACTION = 0.6


def smallest_capacity(instance_types: Iterable[str]) -> Resources:
    """The pod capacity a worker can count on whichever of these instance types the node is."""
    capacities = [pod_capacity(t) for t in instance_types]
    return Resources(
        cpu_millicores=min(c.cpu_millicores for c in capacities),
        memory_mib=min(c.memory_mib for c in capacities),
    )


def per_worker_share(capacity: Resources, workers_per_node: int) -> Resources:
    """What each of N workers gets when they fill a node."""
    return Resources(capacity.cpu_millicores // workers_per_node, capacity.memory_mib // workers_per_node)


def scratch_budget_mib(disk_gib: int) -> int:
    """How much of a node's root volume the workers' scratch space may use together."""
    return int(disk_gib * 1024 * SCRATCH_DISK_FRACTION)


def default_scratch_mib(disks_gib: Sequence[int], workers_per_node: int) -> int:
    """10Gi, or less when several workers share a small disk."""
    return min([DEFAULT_SCRATCH_MIB] + [scratch_budget_mib(d) // workers_per_node for d in disks_gib])


def default_threads(cpu_millicores: int) -> int:
    """One thread per whole core, at least one."""
    return max(1, round(cpu_millicores / 1000))


def max_threads(cpu_millicores: int) -> int:
    return max(1, math.ceil(cpu_millicores / 1000))


def dask_memory_limit_bytes(container_memory_mib: int) -> int:
    return (container_memory_mib - NANNY_OVERHEAD_MIB) * 2**20


def worker_room(max_sizes: Iterable[int], workers_per_node: int) -> int:
    """How many workers the worker groups hold at most."""
    return sum(max_sizes) * workers_per_node
