"""Stack config of the Kubernetes layer (`adaptive-dask:dask`, `adaptive-dask:autoscaler`), validated early.

Every key has its default here. `load_layer_config` takes the raw values exactly as the CLI hands them
(JSON text for the two objects) plus the facts it needs from the rest of the stack (Kubernetes version,
worker node groups), and returns frozen settings, or raises `ConfigError` naming the full key, the bad
value and what is allowed -- before any resource is registered.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pulumi

from infra import instance_types
from infra.errors import ConfigError
from infra.k8s_ca import CA_IMAGE_TAGS, choose_expander, kubernetes_minor
from infra.k8s_placement import WORKER_TAINT, Taint
from infra.k8s_quantity import (
    MIB,
    parse_cpu_millicores,
    parse_go_duration_seconds,
    parse_memory_bytes,
)

NS = "adaptive-dask"
DASK_KEY = f"{NS}:dask"
AUTOSCALER_KEY = f"{NS}:autoscaler"
KUBE_CONTEXT_KEY = f"{NS}:kubeContext"

# Must equal the dask/distributed pins in requirements.txt (a test enforces it): scheduler, workers and
# clients have to run the same Dask release.
DASK_VERSION = "2026.8.0"
DASK_IMAGE_PYTHON = "3.12"
STOCK_IMAGE_REPOSITORY = "ghcr.io/dask/dask"
DEFAULT_IMAGE = f"{STOCK_IMAGE_REPOSITORY}:{DASK_VERSION}-py{DASK_IMAGE_PYTHON}"

MIN_WORKER_MEMORY_MIB = 1024
MIN_WORKER_CPU_MILLICORES = 250
# The nanny process and the preload's HTTP handler live in the worker container's cgroup too, so Dask's
# own memory limit (which drives spilling, pausing and the nanny's restart at 95%) sits below the
# container limit: Dask reacts before the kernel's OOM killer does.
NANNY_OVERHEAD_MIB = 256
# The root volume also holds the images, logs and the kubelet's 10% nodefs eviction margin.
SCRATCH_DISK_FRACTION = 0.6

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
EXPANDERS = ("auto", "least-waste", "priority,least-waste", "random", "most-pods", "least-nodes", "priority")


# ---------------------------------------------------------------- facts from the rest of the stack


@dataclass(frozen=True)
class WorkerGroupFacts:
    """One worker node group, as plain values from the stack config (issue 2 owns its validation)."""

    name: str
    instance_types: tuple[str, ...]
    capacity_type: str = "ON_DEMAND"
    max_size: int | None = None
    disk_gib: int | None = None
    taints: tuple[Taint, ...] = ()  # configured taints besides the standard worker taint
    key: str = ""  # full config key of this group, for error messages


@dataclass(frozen=True)
class ClusterFacts:
    kubernetes_version: str
    worker_groups: tuple[WorkerGroupFacts, ...]
    system_instance_type: str | None = None
    system_taints: tuple[Taint, ...] = ()
    kubernetes_version_key: str = f"{NS}:cluster.version"
    system_instance_type_key: str = f"{NS}:systemNodeGroup.instanceType"


# ---------------------------------------------------------------- settings handed to the components


@dataclass(frozen=True)
class WorkerSizing:
    cpu_millicores: int
    memory_mib: int
    threads: int
    dask_memory_limit_bytes: int


@dataclass(frozen=True)
class WorkerPlacement:
    pools: tuple[str, ...]
    taints: tuple[Taint, ...]


@dataclass(frozen=True)
class DaskSettings:
    target: str
    namespace: str
    image: str
    min_workers: int
    max_workers: int
    interval_s: float
    target_duration_s: float
    scale_down_delay_s: float
    workers_per_node: int
    worker: WorkerSizing
    scheduler_cpu_millicores: int
    scheduler_memory_mib: int
    scratch_mib: int
    termination_grace_seconds: int
    dashboard_cidrs: tuple[str, ...]
    placement: WorkerPlacement | None  # None: local target, no node-group constraints
    system_taints: tuple[Taint, ...] = ()
    dask_version: str = DASK_VERSION


@dataclass(frozen=True)
class AutoscalerSettings:
    kubernetes_version: str
    expander: str  # resolved (never "auto")
    flags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerSettings:
    dask: DaskSettings
    autoscaler: AutoscalerSettings | None
    kube_context: str | None


# ---------------------------------------------------------------- small typed readers


class _Obj:
    """A config object with typed getters that name the full key on every error, and reject typos."""

    def __init__(self, key: str, raw: str | None, known: Sequence[str]) -> None:
        self.key = key
        if raw is None or raw == "":
            self.data: dict[str, Any] = {}
        else:
            try:
                data = json.loads(raw) if isinstance(raw, str) else raw
            except json.JSONDecodeError as exc:
                raise ConfigError(key, raw, f"must be a YAML/JSON object ({exc.msg})") from exc
            if not isinstance(data, dict):
                raise ConfigError(key, data, "must be an object of settings")
            self.data = data
        unknown = sorted(set(self.data) - set(known))
        if unknown:
            raise ConfigError(
                f"{key}.{unknown[0]}",
                self.data[unknown[0]],
                f"unknown setting; known: {', '.join(sorted(known))}",
            )

    def k(self, name: str) -> str:
        return f"{self.key}.{name}"

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def integer(self, name: str, default: int, lo: int, hi: int | None = None) -> int:
        value = self.data.get(name, default)
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.k(name), value, "must be a whole number")
        if value < lo or (hi is not None and value > hi):
            raise ConfigError(
                self.k(name),
                value,
                f"must be between {lo} and {hi}" if hi is not None else f"must be at least {lo}",
            )
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if isinstance(value, str) and value in ("true", "false"):
            value = value == "true"
        if not isinstance(value, bool):
            raise ConfigError(self.k(name), value, "must be true or false")
        return value

    def text(self, name: str, default: str | None) -> str | None:
        value = self.data.get(name, default)
        if value is not None and not isinstance(value, str):
            raise ConfigError(self.k(name), value, "must be a string")
        return value

    def seconds(self, name: str, default: float, lo: float, hi: float) -> float:
        value = self.data.get(name, default)
        try:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int | float) or re.fullmatch(r"[0-9]+(\.[0-9]+)?", str(value)):
                seconds = float(value)
            else:
                seconds = float(parse_go_duration_seconds(str(value)))
        except ValueError:
            raise ConfigError(
                self.k(name), value, "must be seconds (e.g. 30) or a duration like '90s', '2m'"
            ) from None
        if not math.isfinite(seconds) or not lo <= seconds <= hi:
            raise ConfigError(self.k(name), value, f"must be between {lo:g}s and {hi:g}s")
        return seconds

    def duration(self, name: str, default: str, lo_s: int, hi_s: int) -> str:
        value = self.data.get(name, default)
        try:
            seconds = parse_go_duration_seconds(value) if isinstance(value, str) else None
        except ValueError:
            seconds = None
        if seconds is None:
            raise ConfigError(self.k(name), value, "must be a Go duration such as '10m', '90s' or '1m30s'")
        if not Decimal(lo_s) <= seconds <= Decimal(hi_s):
            raise ConfigError(self.k(name), value, f"must be between {lo_s}s and {hi_s}s")
        return value

    def cpu(self, name: str) -> int | None:
        """None only when unset: a zero is an error, never a request for the default."""
        value = self.data.get(name)
        if value is None:
            return None
        try:
            millicores = parse_cpu_millicores(str(value))
        except ValueError:
            raise ConfigError(
                self.k(name), value, "must be a CPU quantity such as '2', '1.5' or '500m'"
            ) from None
        if millicores <= 0:
            raise ConfigError(self.k(name), value, "must be more than 0 (leave it unset for the default)")
        return millicores

    def memory_mib(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        try:
            amount = parse_memory_bytes(str(value))
        except ValueError:
            raise ConfigError(
                self.k(name), value, "must be a memory quantity such as '4Gi' or '512Mi'"
            ) from None
        if amount < MIB:
            raise ConfigError(self.k(name), value, "must be at least 1Mi (leave it unset for the default)")
        return amount // MIB


# ---------------------------------------------------------------- the two objects


_DASK_KEYS = (
    "namespace",
    "image",
    "minWorkers",
    "maxWorkers",
    "interval",
    "targetDuration",
    "scaleDownDelay",
    "workersPerNode",
    "workerThreads",
    "workerCpu",
    "workerMemory",
    "schedulerCpu",
    "schedulerMemory",
    "scratchSize",
    "terminationGracePeriodSeconds",
    "dashboardAllowedCidrs",
    "dashboardAllowAnyCidr",
)
_AUTOSCALER_KEYS = (
    "scaleDownUnneededTime",
    "scaleDownDelayAfterAdd",
    "maxNodeProvisionTime",
    "expander",
    "balanceSimilarNodeGroups",
    "skipNodesWithLocalStorage",
    "skipNodesWithSystemPods",
)


def _validate_image(key: str, image: str) -> str:
    match = _IMAGE.match(image)
    if not match or not (match["tag"] or match["digest"]):
        raise ConfigError(
            key, image, "must be an image reference pinned by tag or digest, e.g. " + DEFAULT_IMAGE
        )
    if match["tag"] == "latest" and not match["digest"]:
        raise ConfigError(key, image, "'latest' is not a pin; use a release tag or a digest")
    if (
        match["repo"] == STOCK_IMAGE_REPOSITORY
        and match["tag"]
        and not (match["tag"] == DASK_VERSION or match["tag"].startswith(f"{DASK_VERSION}-"))
    ):
        raise ConfigError(
            key,
            image,
            f"the stock Dask image must be release {DASK_VERSION} "
            "(the dask/distributed pinned in requirements.txt); clients and cluster must match",
        )
    return image


def _validate_cidrs(obj: _Obj) -> tuple[str, ...]:
    key = obj.k("dashboardAllowedCidrs")
    raw = obj.data.get("dashboardAllowedCidrs", [])
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise ConfigError(key, raw, "must be a list of CIDR strings, e.g. ['10.20.0.0/16']")
    allow_any = obj.flag("dashboardAllowAnyCidr", False)
    out = []
    for i, text in enumerate(raw):
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ConfigError(f"{key}[{i}]", text, f"must be a CIDR with no host bits set ({exc})") from exc
        if network.prefixlen == 0 and not allow_any:
            raise ConfigError(
                f"{key}[{i}]",
                text,
                "opens the dashboard to every address; set "
                f"{obj.k('dashboardAllowAnyCidr')}: true to acknowledge, or list your networks",
            )
        out.append(str(network))
    return tuple(dict.fromkeys(out))


def _unset_to(value: int | None, default: int) -> int:
    return default if value is None else value


def _worker_capacity(facts: ClusterFacts) -> instance_types.Resources:
    """The smallest pod capacity over every instance type of every worker group (pods must fit all)."""
    if not facts.worker_groups:
        raise ConfigError(f"{NS}:workerGroups", [], "the aws target needs at least one worker group")
    capacities = []
    for gi, group in enumerate(facts.worker_groups):
        for ti, itype in enumerate(group.instance_types):
            if itype not in instance_types.INSTANCE_TYPES:
                raise ConfigError(
                    f"{group.key or f'{NS}:workerGroups[{gi}]'}.instanceTypes[{ti}]",
                    itype,
                    "worker pods are sized from a table of known instance types: "
                    + ", ".join(sorted(instance_types.INSTANCE_TYPES)),
                )
            capacities.append(instance_types.pod_capacity(itype))
    return instance_types.Resources(
        cpu_millicores=min(c.cpu_millicores for c in capacities),
        memory_mib=min(c.memory_mib for c in capacities),
    )


def _size_workers(obj: _Obj, target: str, facts: ClusterFacts | None) -> tuple[int, WorkerSizing]:
    if target == "local":
        if obj.has("workersPerNode"):
            raise ConfigError(
                obj.k("workersPerNode"),
                obj.data["workersPerNode"],
                "only the aws target sizes workers per node; set workerCpu and workerMemory",
            )
        per_node = 1
        cpu = _unset_to(obj.cpu("workerCpu"), 1000)
        memory = _unset_to(obj.memory_mib("workerMemory"), 2048)
        share_cpu, share_mem = cpu, memory
    else:
        assert facts is not None
        capacity = _worker_capacity(facts)
        per_node = obj.integer("workersPerNode", 1, 1, 64)
        share_cpu = capacity.cpu_millicores // per_node
        share_mem = capacity.memory_mib // per_node
        cpu = _unset_to(obj.cpu("workerCpu"), share_cpu)
        memory = _unset_to(obj.memory_mib("workerMemory"), share_mem)
        fit = f"{per_node} worker(s) per node of the smallest worker instance type leave {share_cpu}m CPU"
        fit += f" and {share_mem}Mi memory each"
        if cpu > share_cpu:
            raise ConfigError(obj.k("workerCpu"), obj.data.get("workerCpu"), f"does not fit: {fit}")
        if memory > share_mem:
            raise ConfigError(obj.k("workerMemory"), obj.data.get("workerMemory"), f"does not fit: {fit}")
    if cpu < MIN_WORKER_CPU_MILLICORES:
        key = obj.k("workerCpu") if obj.has("workerCpu") else obj.k("workersPerNode")
        raise ConfigError(
            key,
            obj.data.get(key.rsplit(".", 1)[1], per_node),
            f"leaves {cpu}m CPU per worker; at least {MIN_WORKER_CPU_MILLICORES}m is needed",
        )
    if memory < MIN_WORKER_MEMORY_MIB:
        key = obj.k("workerMemory") if obj.has("workerMemory") else obj.k("workersPerNode")
        raise ConfigError(
            key,
            obj.data.get(key.rsplit(".", 1)[1], per_node),
            f"leaves {memory}Mi per worker; at least {MIN_WORKER_MEMORY_MIB}Mi is needed",
        )
    max_threads = max(1, math.ceil(cpu / 1000))
    threads = obj.integer("workerThreads", max(1, round(cpu / 1000)), 1)
    if threads > max_threads:
        raise ConfigError(
            obj.k("workerThreads"),
            threads,
            f"more threads than the worker's {cpu}m CPU can run; at most {max_threads}",
        )
    sizing = WorkerSizing(
        cpu_millicores=cpu,
        memory_mib=memory,
        threads=threads,
        dask_memory_limit_bytes=(memory - NANNY_OVERHEAD_MIB) * MIB,
    )
    return per_node, sizing


def _scratch_does_not_fit(obj: _Obj, per_node: int, facts: ClusterFacts) -> None:
    """The default scratch (a 60% share of the disk per worker) is under the 1Gi minimum: name the key the
    user set - workersPerNode if set, else the smallest worker group's diskGiB - with the numbers."""
    group = min((g for g in facts.worker_groups if g.disk_gib), key=lambda g: g.disk_gib or 0)
    disk = group.disk_gib or 0
    budget_mib = int(disk * 1024 * SCRATCH_DISK_FRACTION)
    why = (
        f"{per_node} worker(s) per node x the 1Gi minimum scratch space need {per_node * 1024}Mi, more than "
        f"{SCRATCH_DISK_FRACTION:.0%} of the {disk} GiB disk of worker group {group.name!r} ({budget_mib}Mi)"
    )
    disk_key = f"{group.key}.diskGiB" if group.key else f"{NS}:workerGroups[].diskGiB"
    if obj.has("workersPerNode"):
        raise ConfigError(obj.k("workersPerNode"), per_node, f"{why}; lower it or raise {disk_key}")
    raise ConfigError(disk_key, disk, f"{why}; raise it")


def _check_scheduler_fits(obj: _Obj, facts: ClusterFacts, cpu: int, memory_mib: int) -> None:
    """The scheduler runs on a system node: it must fit one, or it stays Pending forever."""
    itype = facts.system_instance_type
    assert itype is not None
    if itype not in instance_types.INSTANCE_TYPES:
        raise ConfigError(
            facts.system_instance_type_key,
            itype,
            "the scheduler must fit a system node, and only instance types in infra/instance_types.py can "
            f"be checked: use one of {', '.join(sorted(instance_types.INSTANCE_TYPES))}, or add this type "
            "to that table (vCPUs, memory GiB, ENI max pods)",
        )
    free = instance_types.pod_capacity(itype)
    if cpu <= free.cpu_millicores and memory_mib <= free.memory_mib:
        return
    bad = "schedulerCpu" if cpu > free.cpu_millicores else "schedulerMemory"
    fit = f"{itype} system node ({free.cpu_millicores}m CPU, {free.memory_mib}Mi free for pods)"
    if obj.has(bad):
        raise ConfigError(obj.k(bad), obj.data.get(bad), f"does not fit a {fit}")
    raise ConfigError(
        facts.system_instance_type_key,
        itype,
        f"the scheduler's default {cpu}m CPU / {memory_mib}Mi does not fit a {fit}; choose a larger type "
        f"or set {obj.k(bad)}",
    )


def parse_dask(
    raw: str | None, *, target: str, facts: ClusterFacts | None, default_namespace: str
) -> DaskSettings:
    obj = _Obj(DASK_KEY, raw, _DASK_KEYS)
    namespace = obj.text("namespace", default_namespace) or default_namespace
    if len(namespace) > 63 or not _LABEL.match(namespace):
        raise ConfigError(
            obj.k("namespace"), namespace, "must be a DNS-1123 label (a-z, 0-9, '-', at most 63)"
        )
    image = _validate_image(obj.k("image"), obj.text("image", DEFAULT_IMAGE) or DEFAULT_IMAGE)

    per_node, sizing = _size_workers(obj, target, facts)
    # How many workers the worker groups can hold at most (None: unknown, e.g. the local target).
    room = None
    if target == "aws" and facts and all(g.max_size is not None for g in facts.worker_groups):
        room = sum(g.max_size or 0 for g in facts.worker_groups) * per_node
    min_workers = obj.integer("minWorkers", 0, 0, 10_000)
    max_workers = obj.integer("maxWorkers", room or (4 if target == "local" else 20), 1, 10_000)
    if min_workers > max_workers:
        raise ConfigError(obj.k("minWorkers"), min_workers, f"must not exceed maxWorkers ({max_workers})")
    if room is not None and max_workers > room:
        raise ConfigError(
            obj.k("maxWorkers"),
            max_workers,
            f"the worker groups hold at most {room} workers (sum of maxSize x workersPerNode {per_node})",
        )

    placement = None
    disks = [g.disk_gib for g in facts.worker_groups if g.disk_gib] if (facts and target == "aws") else []
    # Default: 10Gi, or less when several workers share a small disk.
    default_scratch = min([10 * 1024] + [int(d * 1024 * SCRATCH_DISK_FRACTION) // per_node for d in disks])
    scratch_mib = _unset_to(obj.memory_mib("scratchSize"), default_scratch)
    if scratch_mib < 1024 and obj.has("scratchSize"):
        raise ConfigError(obj.k("scratchSize"), obj.data.get("scratchSize"), "must be at least 1Gi")
    if scratch_mib < 1024:
        assert facts is not None  # only several workers on a small disk make the default this small
        _scratch_does_not_fit(obj, per_node, facts)
    if target == "aws":
        assert facts is not None
        groups = facts.worker_groups
        for group in groups:
            disk_budget = (group.disk_gib or 0) * 1024 * SCRATCH_DISK_FRACTION
            if group.disk_gib is not None and scratch_mib * per_node > disk_budget:
                raise ConfigError(
                    obj.k("scratchSize"),
                    obj.data.get("scratchSize", "10Gi"),
                    f"x {per_node} worker(s) per node exceeds {SCRATCH_DISK_FRACTION:.0%} of the "
                    f"{group.disk_gib} GiB disk of worker group {group.name!r}",
                )
        taints = [WORKER_TAINT] + [t for g in groups for t in g.taints]
        placement = WorkerPlacement(pools=tuple(g.name for g in groups), taints=tuple(dict.fromkeys(taints)))

    scheduler_cpu = _unset_to(obj.cpu("schedulerCpu"), 1000 if target == "aws" else 500)
    scheduler_mem = _unset_to(obj.memory_mib("schedulerMemory"), 2048 if target == "aws" else 1024)
    if scheduler_cpu < 100 or scheduler_mem < 512:
        bad = "schedulerCpu" if scheduler_cpu < 100 else "schedulerMemory"
        raise ConfigError(obj.k(bad), obj.data.get(bad), "the scheduler needs at least 100m CPU and 512Mi")
    if target == "aws" and facts and facts.system_instance_type is not None:
        _check_scheduler_fits(obj, facts, scheduler_cpu, scheduler_mem)

    return DaskSettings(
        target=target,
        namespace=namespace,
        image=image,
        min_workers=min_workers,
        max_workers=max_workers,
        interval_s=obj.seconds("interval", 1, 0.1, 300),
        target_duration_s=obj.seconds("targetDuration", 5, 0.1, 3600),
        scale_down_delay_s=obj.seconds("scaleDownDelay", 60, 0, 86_400),
        workers_per_node=per_node,
        worker=sizing,
        scheduler_cpu_millicores=scheduler_cpu,
        scheduler_memory_mib=scheduler_mem,
        scratch_mib=scratch_mib,
        termination_grace_seconds=obj.integer("terminationGracePeriodSeconds", 120, 30, 3600),
        dashboard_cidrs=_validate_cidrs(obj),
        placement=placement,
        system_taints=facts.system_taints if (facts and target == "aws") else (),
    )


def parse_autoscaler(raw: str | None, *, facts: ClusterFacts) -> AutoscalerSettings:
    obj = _Obj(AUTOSCALER_KEY, raw, _AUTOSCALER_KEYS)
    try:
        minor = kubernetes_minor(facts.kubernetes_version)
    except ValueError:
        minor = None
    if minor not in CA_IMAGE_TAGS:
        raise ConfigError(
            facts.kubernetes_version_key,
            facts.kubernetes_version,
            "cluster-autoscaler must match the Kubernetes minor; supported: " + ", ".join(CA_IMAGE_TAGS),
        )
    expander = obj.text("expander", "auto")
    if expander not in EXPANDERS:
        raise ConfigError(obj.k("expander"), expander, f"must be one of {', '.join(EXPANDERS)}")
    resolved = choose_expander(expander, [g.capacity_type for g in facts.worker_groups])
    flags = {
        "scale-down-unneeded-time": obj.duration("scaleDownUnneededTime", "5m", 60, 86_400),
        "scale-down-delay-after-add": obj.duration("scaleDownDelayAfterAdd", "5m", 0, 86_400),
        "max-node-provision-time": obj.duration("maxNodeProvisionTime", "10m", 60, 3600),
        "expander": resolved,
        "balance-similar-node-groups": str(obj.flag("balanceSimilarNodeGroups", True)).lower(),
        "skip-nodes-with-local-storage": str(obj.flag("skipNodesWithLocalStorage", False)).lower(),
        "skip-nodes-with-system-pods": str(obj.flag("skipNodesWithSystemPods", False)).lower(),
    }
    return AutoscalerSettings(kubernetes_version=minor, expander=resolved, flags=flags)


def load_layer_config(
    *,
    target: str,
    facts: ClusterFacts | None,
    default_namespace: str,
    config: pulumi.Config | None = None,
) -> LayerSettings:
    """Read `adaptive-dask:dask`, `adaptive-dask:autoscaler` and `adaptive-dask:kubeContext`."""
    if target not in ("aws", "local"):
        raise ConfigError(f"{NS}:target", target, "must be 'aws' or 'local'")
    if target == "aws" and facts is None:
        raise ValueError("the aws target needs cluster facts")  # programming error, not config
    cfg = config or pulumi.Config(NS)
    dask = parse_dask(cfg.get("dask"), target=target, facts=facts, default_namespace=default_namespace)
    autoscaler = None
    if target == "aws":
        assert facts is not None
        autoscaler = parse_autoscaler(cfg.get("autoscaler"), facts=facts)
    elif cfg.get("autoscaler"):
        raise ConfigError(AUTOSCALER_KEY, cfg.get("autoscaler"), "the local target has no cluster-autoscaler")
    kube_context = cfg.get("kubeContext")
    if kube_context is not None and target != "local":
        raise ConfigError(KUBE_CONTEXT_KEY, kube_context, "only the local target uses a kubeconfig context")
    if kube_context is not None and not kube_context.strip():
        raise ConfigError(KUBE_CONTEXT_KEY, kube_context, "must name a context of your kubeconfig")
    return LayerSettings(dask=dask, autoscaler=autoscaler, kube_context=kube_context)
