"""The whole stack's settings: one frozen tree, built once by `infra.config.load.load_settings`.

Layers take the part they need (`settings.aws.network`, `settings.dask`, ...) as typed values and never
read config themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.config.budget import BudgetConfig
from infra.config.data_access import DataAccess
from infra.config.jupyter import JupyterSettings
from infra.config.monitoring import MonitoringSettings
from infra.facts.placement import Taint, worker_labels, worker_taints

# Must equal the dask/distributed pins in requirements.txt (a test enforces it): scheduler, workers and
# clients have to run the same Dask release.
DASK_VERSION = "2026.8.0"


@dataclass(frozen=True)
class NetworkConfig:
    cidr: str
    az_count: int
    nat_mode: str
    flow_logs: bool
    flow_log_retention_days: int
    zone_ids: tuple[str, ...] = ()  # pinned zone IDs, one per AZ in order; () = the first usable ones


@dataclass(frozen=True)
class ClusterConfig:
    version: str
    endpoint_public_access: bool
    public_access_cidrs: tuple[str, ...]
    endpoint_private_access: bool
    log_types: tuple[str, ...]
    log_retention_days: int
    admin_arns: tuple[str, ...]
    deployer_admin: bool
    service_cidr: str
    support_type: str
    addon_versions: Mapping[str, str]
    node_ami_release_version: str | None  # None: the newest AMI release for `version` (read from SSM)
    preview_arns: tuple[str, ...] = ()  # CI's read-only preview roles: an access entry each, view only


@dataclass(frozen=True)
class SystemNodeGroupConfig:
    instance_type: str
    size: int
    disk_gib: int


@dataclass(frozen=True)
class WorkerGroupConfig:
    name: str
    instance_types: tuple[str, ...]
    capacity_type: str
    min_size: int
    max_size: int
    disk_gib: int
    labels: Mapping[str, str]  # as configured
    taints: tuple[Taint, ...]  # as configured
    key: str = ""  # its full config key, e.g. `adaptive-dask:workerGroups[0]`, for error messages

    @property
    def node_labels(self) -> dict[str, str]:
        """Every label its nodes carry (configured + pool)."""
        return worker_labels(self.name, self.labels)

    @property
    def node_taints(self) -> tuple[Taint, ...]:
        """Every taint its nodes carry (the Dask-worker taint + configured): worker pods tolerate them all."""
        return worker_taints(self.taints)


@dataclass(frozen=True)
class AwsConfig:
    region: str
    network: NetworkConfig
    cluster: ClusterConfig
    system: SystemNodeGroupConfig
    workers: tuple[WorkerGroupConfig, ...]
    images: ImagesConfig = field(default_factory=lambda: ImagesConfig())


@dataclass(frozen=True)
class ImagesConfig:
    """`adaptive-dask:images`: where the team's Dask image lives (infra/aws/images.py)."""

    repository: bool = False  # an ECR repository per stack
    keep_images: int = 30  # the lifecycle policy keeps this many newest images


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
    interval: float  # seconds, like the next two
    target_duration: float
    scale_down_delay: float
    workers_per_node: int
    worker: WorkerSizing
    scheduler_cpu_millicores: int
    scheduler_memory_mib: int
    scratch_mib: int
    termination_grace_seconds: int
    dashboard_cidrs: tuple[str, ...]
    placement: WorkerPlacement | None  # None: local target, no node-group constraints
    # Who may open the scheduler port besides the stack's workers (NetworkPolicy peers): label
    # selectors of namespaces (every pod there) and of pods in the Dask namespace.
    client_namespace_selectors: tuple[Mapping[str, str], ...] = ()
    client_pod_selectors: tuple[Mapping[str, str], ...] = ()
    admission_policy: bool = True  # the scheduler's ValidatingAdmissionPolicy (Kubernetes >= 1.30)
    tls: bool = True  # mutual TLS on every Dask connection (per-stack CA; infra/k8s/tls.py)
    client_groups: tuple[str, ...] = ()  # Kubernetes groups bound to the client Role (cert + port-forward)
    headroom_workers: int = 0  # placeholder pods holding warm room for this many workers (k8s/headroom.py)
    min_workers_schedule: str = ""  # time-varying minimum for the preload (dask_adaptive/schedule.py grammar)
    kubernetes_version: str | None = None  # the cluster's minor when known (aws); None: any (local)
    dask_version: str = DASK_VERSION
    # Egress (k8s/network_policies.py). Where the scheduler reaches the API server (IPv4 CIDRs, TCP ports),
    # and whether workers are kept off private address space. parse_dask resolves them per target.
    api_server_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    api_server_ports: tuple[int, ...] = (443,)
    worker_egress_deny_private: bool = True
    data_access: DataAccess = field(default_factory=DataAccess)  # workers' data identity (data_access.py)
    # The preload options a stack passes through as set (dask_adaptive/options.py `stack=True`), by
    # Python name; the rest of the scheduler's command line is derived (infra/k8s/dask_objects.py).
    preload_options: Mapping[str, Any] = field(default_factory=dict)
    # The stack's cost-allocation tags (aws; empty on local) for what Kubernetes makes AWS create outside
    # the provider's default tags: the dashboard's load balancer (infra/k8s/services.py).
    aws_tags: Mapping[str, str] = field(default_factory=dict)
    jupyter: JupyterSettings = field(default_factory=JupyterSettings)  # the in-cluster notebook (jupyter.py)
    monitoring: MonitoringSettings = field(default_factory=MonitoringSettings)  # PodMonitor, dashboard


@dataclass(frozen=True)
class AutoscalerSettings:
    kubernetes_version: str
    expander: str  # resolved (never "auto")
    flags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    target: str
    production: bool
    name_prefix: str
    name: str  # `<namePrefix>-<stack>`: the cluster name and the root of every physical name
    tags: Mapping[str, str]
    aws: AwsConfig | None  # None when target == "local"
    dask: DaskSettings
    autoscaler: AutoscalerSettings | None  # None when target == "local"
    kube_context: str | None  # local target only
    budget: BudgetConfig | None = None  # `adaptive-dask:budget` (infra/config/budget.py); None: no budget
