"""The in-cluster notebook, as configured (`dask.jupyter`): validated here, before anything is created.

Off by default, and refused on the stock Dask image (it has no JupyterLab: the team's image from image/
carries it). On aws it runs on the system pool, or on a named worker group, and must fit there: the
system pool is fixed-size, so a notebook that fits none of its nodes beside the scheduler and the system
pods would stay Pending forever (`infra/facts/system_pool.py`). Its home is a persistent volume of at
least 1Gi; idle kernels and the server are culled after `idleCullMinutes` so an abandoned notebook does
not hold workers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.config.reader import Field, Section
from infra.facts import instance_types, sizing, system_pool
from infra.facts.instance_types import Resources
from infra.facts.placement import SYSTEM_POOL, Taint

if TYPE_CHECKING:
    from infra.config.settings import AwsConfig

JUPYTER_DEFAULTS: dict = {
    "enabled": False,
    "cpu": "1",
    "memory": "2Gi",
    "storage": "10Gi",
    "idleCullMinutes": 60,
    "nodeGroup": None,  # aws: the system pool; local: any node
    "storageClass": None,  # local: the cluster's default StorageClass; aws: the program's encrypted gp3
}
# What the notebook image carries beyond Dask (image/requirements.txt pins them; the stock image: none).
LAB_PACKAGES = ("jupyterlab", "dask-labextension", "jupyter-server-proxy")
# The program's StorageClass on aws (infra/aws/storage.py): encrypted gp3 through the EBS CSI driver.
AWS_STORAGE_CLASS = "adaptive-dask-notebook-gp3"
MIN_CPU_MILLICORES = 250
MIN_MEMORY_MIB = 1024  # JupyterLab and one kernel
MIN_STORAGE_MIB = 1024
MAX_STORAGE_MIB = 16 * 1024 * 1024  # gp3's largest volume, 16 TiB
CULL_MINUTES = (5, 7 * 24 * 60)
_STORAGE_CLASS_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class JupyterSettings:
    enabled: bool = False
    cpu_millicores: int = 1000
    memory_mib: int = 2048
    storage_mib: int = 10 * 1024
    idle_cull_minutes: int = 60
    pool: str | None = None  # the node pool it is pinned to (aws); None: any node (local)
    taints: tuple[Taint, ...] = ()  # the pool's taints, tolerated
    storage_class: str | None = None  # None: the cluster's default (local) or the program's class (aws)


def _resources(s: Section) -> tuple[int, int]:
    cpu, memory = s["cpu"].cpu_millicores(), s["memory"].memory_mib()
    assert cpu is not None and memory is not None  # both have defaults
    if cpu < MIN_CPU_MILLICORES:
        raise s["cpu"].fail(f"must be at least {MIN_CPU_MILLICORES}m (JupyterLab and a kernel)")
    if memory < MIN_MEMORY_MIB:
        raise s["memory"].fail(f"must be at least {MIN_MEMORY_MIB}Mi (JupyterLab and a kernel)")
    return cpu, memory


def _storage(field: Field) -> int:
    mib = field.memory_mib()
    assert mib is not None
    if mib < MIN_STORAGE_MIB:
        raise field.fail("must be at least 1Gi (the notebook's home volume)")
    if mib > MAX_STORAGE_MIB:
        raise field.fail("must be at most 16Ti (the largest gp3 volume)")
    return mib


def _blame(s: Section, memory: int, fits: Callable[[Resources], bool]) -> Field:
    """The key to name when the notebook does not fit: CPU if it fits with no CPU at all, else memory."""
    return s["cpu"] if fits(Resources(0, memory)) else s["memory"]


def _on_system_pool(s: Section, aws: AwsConfig, scheduler: Resources, cpu: int, memory: int) -> None:
    itype = aws.system.instance_type
    node = instance_types.pod_capacity(itype)  # parse_dask checked the type is in the table

    def fits(notebook: Resources) -> bool:
        held = system_pool.system_pods(scheduler, ebs_csi=True)
        return system_pool.packs(node, aws.system.size, (*held, notebook))

    if fits(Resources(cpu, memory)):
        return
    raise _blame(s, memory, fits).fail(
        f"the notebook ({cpu}m CPU, {memory}Mi) does not fit the system pool: {aws.system.size} x {itype} "
        f"({node.cpu_millicores}m CPU, {node.memory_mib}Mi free for pods each) already hold the scheduler "
        f"({scheduler.cpu_millicores}m, {scheduler.memory_mib}Mi), CoreDNS and the EBS CSI controller; "
        "lower it, enlarge systemNodeGroup (instanceType or size), or set nodeGroup to a worker group"
    )


def _placement(
    s: Section, aws: AwsConfig | None, scheduler: Resources, cpu: int, memory: int
) -> tuple[str | None, tuple[Taint, ...]]:
    field = s["nodeGroup"]
    name = field.optional_string()
    if aws is None:
        if name is not None:
            raise field.fail("needs target aws (node groups); elsewhere the notebook may run on any node")
        return None, ()
    if name is None or name == SYSTEM_POOL:
        _on_system_pool(s, aws, scheduler, cpu, memory)
        return SYSTEM_POOL, ()
    groups = {g.name: g for g in aws.workers}
    if name not in groups:
        allowed = ", ".join([SYSTEM_POOL, *groups])
        raise field.fail(f"must be {SYSTEM_POOL!r} (the default) or a worker group name: {allowed}")
    group = groups[name]
    capacity = sizing.smallest_capacity(group.instance_types)
    if cpu > capacity.cpu_millicores or memory > capacity.memory_mib:
        bad = s["cpu"] if cpu > capacity.cpu_millicores else s["memory"]
        raise bad.fail(
            f"does not fit a node of worker group {name!r} (the smallest of its instance types leaves "
            f"{capacity.cpu_millicores}m CPU and {capacity.memory_mib}Mi for pods)"
        )
    return name, group.node_taints


def _storage_class(field: Field, target: str) -> str | None:
    name = field.optional_string()
    if name is None:
        return None
    if target == "aws":
        raise field.fail("is for the local target; on aws the program makes an encrypted gp3 StorageClass")
    if len(name) > 253 or not _STORAGE_CLASS_RE.match(name):
        raise field.fail("must be a StorageClass name (a DNS subdomain: a-z, 0-9, '-', '.')")
    return name


def parse_jupyter(
    s: Section, *, target: str, aws: AwsConfig | None, scheduler: Resources, tls: bool, stock_image: bool
) -> JupyterSettings:
    """`dask.jupyter`; `scheduler` is the scheduler's size (it shares the system pool on aws);
    `stock_image`: dask.image is the stock Dask release, which has no JupyterLab."""
    if not s["enabled"].boolean():
        return JupyterSettings()  # the other fields are not checked (Section already refused typos)
    if stock_image:
        # The pod would crash-loop on every `up`: refused here rather than found on the cluster.
        raise s["enabled"].fail(
            f"needs an image carrying {', '.join(LAB_PACKAGES[:-1])} and {LAB_PACKAGES[-1]}: "
            "dask.image is the stock Dask image, which has none of them; build image/ "
            "(docs/data-and-code.md), push it and set dask.image, then enable the notebook"
        )
    if not tls:
        raise s["enabled"].fail(
            "needs dask.tls=true: the notebook connects with the client certificate, over TLS only"
        )
    cpu, memory = _resources(s)
    storage = _storage(s["storage"])
    minutes = s["idleCullMinutes"].integer(*CULL_MINUTES)
    storage_class = _storage_class(s["storageClass"], target)
    pool, taints = _placement(s, aws, scheduler, cpu, memory)
    return JupyterSettings(
        enabled=True,
        cpu_millicores=cpu,
        memory_mib=memory,
        storage_mib=storage,
        idle_cull_minutes=minutes,
        pool=pool,
        taints=taints,
        storage_class=AWS_STORAGE_CLASS if target == "aws" else storage_class,
    )
