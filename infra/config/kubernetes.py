"""The Kubernetes layer's keys (`dask`, `autoscaler`, `kubeContext`): defaults and validators.

The worker groups' facts come in as the validated `AwsConfig` (None for the local target); the sizing
arithmetic lives in `infra.facts.sizing`. Every error names the key the user set, the value and what is
allowed.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from infra.config.autoscaler import AUTOSCALER_DEFAULTS, EXPANDERS, parse_autoscaler
from infra.config.data_access import parse_data_access
from infra.config.jupyter import JUPYTER_DEFAULTS, parse_jupyter
from infra.config.monitoring import MONITORING_DEFAULTS, parse_monitoring
from infra.config.preload_options import PASS_THROUGH, min_workers_schedule, preload_options
from infra.config.reader import PROJECT, ConfigReader, Field, Section
from infra.config.settings import (
    DASK_VERSION,
    AutoscalerSettings,
    AwsConfig,
    DaskSettings,
    WorkerPlacement,
    WorkerSizing,
)
from infra.errors import ConfigError
from infra.facts import instance_types, sizing
from infra.facts.instance_types import Resources
from infra.facts.placement import WORKER_TAINT, is_label_key, is_label_value

__all__ = ["AUTOSCALER_DEFAULTS", "DASK_DEFAULTS", "EXPANDERS", "parse_dask", "parse_kubernetes"]

DASK_IMAGE_PYTHON = "3.12"
STOCK_IMAGE_REPOSITORY = "ghcr.io/dask/dask"
DEFAULT_IMAGE = f"{STOCK_IMAGE_REPOSITORY}:{DASK_VERSION}-py{DASK_IMAGE_PYTHON}"

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)

# None: the default depends on the target or on other values (computed below).
DASK_DEFAULTS: dict[str, Any] = {
    "namespace": None,  # the stack's name
    "image": DEFAULT_IMAGE,
    "minWorkers": 0,
    "maxWorkers": None,  # aws: what the worker groups hold; local: 4
    "interval": 1,
    "targetDuration": 5,
    "scaleDownDelay": 60,
    "workersPerNode": None,  # aws only: 1
    "workerThreads": None,  # the CPU rounded to whole cores
    "workerCpu": None,  # aws: the node's share; local: 1
    "workerMemory": None,  # aws: the node's share; local: 2Gi
    "schedulerCpu": None,  # aws: 1, local: 500m
    "schedulerMemory": None,  # aws: 2Gi, local: 1Gi
    "scratchSize": None,  # 10Gi or a disk's share
    "terminationGracePeriodSeconds": 120,
    "dashboardAllowedCidrs": [],
    "dashboardAllowAnyCidr": False,
    "allowedClientNamespaces": [],
    "allowedClientPods": [],
    "admissionPolicy": True,
    "tls": True,
    "clientGroups": [],
    "headroomWorkers": 0,
    "minWorkersSchedule": "",
    "apiServerCidrs": None,  # aws: the VPC CIDR and the `kubernetes` Service IP; local: 0.0.0.0/0
    "apiServerPorts": None,  # aws: [443]; local: [443, 6443, 8443]
    "workerEgressDenyPrivate": None,  # aws: true; local: false
    "dataBuckets": [],  # aws: the workers' role reads (and, readwrite, writes) these, nothing else
    "dataKmsKeyArns": [],  # aws: keys of SSE-KMS objects in dataBuckets
    "workerPolicyArns": [],  # aws: extra managed policies for the workers' role
    "workerServiceAccountAnnotations": {},  # local: e.g. IRSA or another cloud's workload identity
    "jupyter": {},  # the in-cluster notebook, off by default (infra/config/jupyter.py JUPYTER_DEFAULTS)
    "monitoring": {},  # PodMonitor, Grafana dashboard, scrapers (infra/config/monitoring.py)
    # The preload's pass-through options (dask_adaptive/options.py rows with stack=True); unset: the
    # preload's own default (dask_adaptive/CONFIG.md).
    **{o.stack_key: None for o in PASS_THROUGH},
}

# Namespaces every cluster already has: creating one fails AlreadyExists after the whole AWS layer is up,
# and destroying the stack would delete it. Kubernetes also reserves the `kube-` prefix.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")

# Where API servers listen on clusters of the local target: 443 (the `kubernetes` Service), 6443 (kubeadm,
# kind, k3s, Docker Desktop), 8443 (minikube).
LOCAL_API_SERVER_PORTS = (443, 6443, 8443)


def _unset_to(value: int | None, default: int) -> int:
    return default if value is None else value


def _image(field: Field, production: bool = False) -> str:
    """A pinned image. In production a team's own image (anything but the stock release) must be pinned
    by digest: a tag can be pushed again with other code, a digest cannot (the ECR repository's tags are
    immutable too, but a digest also holds on registries that are not)."""
    image = field.string()
    match = _IMAGE.match(image)
    if not match or not (match["tag"] or match["digest"]):
        raise field.fail("must be an image reference pinned by tag or digest, e.g. " + DEFAULT_IMAGE)
    if match["tag"] == "latest" and not match["digest"]:
        raise field.fail("'latest' is not a pin; use a release tag or a digest")
    if (
        match["repo"] == STOCK_IMAGE_REPOSITORY
        and match["tag"]
        and not (match["tag"] == DASK_VERSION or match["tag"].startswith(f"{DASK_VERSION}-"))
    ):
        raise field.fail(
            f"the stock Dask image must be release {DASK_VERSION} "
            "(the dask/distributed pinned in requirements.txt); clients and cluster must match"
        )
    if production and match["repo"] != STOCK_IMAGE_REPOSITORY and not match["digest"]:
        raise field.fail(
            "must be pinned by digest in a production stack, e.g. <repository>@sha256:<64 hex> "
            "(a tag alone can be re-pushed); the image workflow writes it"
        )
    return image


def is_stock_image(image: str) -> bool:
    """The stock Dask release image (any tag or digest): dask and distributed only, no JupyterLab."""
    match = _IMAGE.match(image)
    return bool(match) and match["repo"] == STOCK_IMAGE_REPOSITORY


def _dashboard_cidrs(s: Section) -> tuple[str, ...]:
    field = s["dashboardAllowedCidrs"]
    if not isinstance(field.value, list) or not all(isinstance(c, str) for c in field.value):
        raise field.fail("must be a list of CIDR strings, e.g. ['10.20.0.0/16']")
    allow_any = s["dashboardAllowAnyCidr"].boolean()
    out = []
    for item in field.items():
        try:
            network = ipaddress.ip_network(item.value, strict=True)
        except ValueError as exc:
            raise item.fail(f"must be a CIDR with no host bits set ({exc})") from exc
        if network.prefixlen == 0 and not allow_any:
            raise item.fail(
                "opens the dashboard to every address; set "
                f"{s['dashboardAllowAnyCidr'].key}: true to acknowledge, or list your networks"
            )
        out.append(str(network))
    return tuple(dict.fromkeys(out))


def _selectors(field: Field) -> tuple[dict[str, str], ...]:
    """A list of label selectors (`{key: value}` objects, every pair must match), none of them empty:
    an empty selector would select every namespace or pod, which is what the policy exists to prevent."""
    out = []
    for item in field.items():
        labels = item.string_map()
        if not labels:
            raise item.fail("must name at least one label (an empty selector matches everything)")
        for key, value in labels.items():
            if not is_label_key(key) or not is_label_value(value):
                raise Field(f"{item.key}.{key}", value).fail("must be a Kubernetes label key and value")
        out.append(labels)
    return tuple(out)


def _admission_policy(s: Section, target: str) -> bool:
    """The scheduler's admission policy needs admissionregistration.k8s.io/v1 (Kubernetes >= 1.30): every
    EKS version this stack allows has it, so only the local target may turn it off (older clusters)."""
    enabled = s["admissionPolicy"].boolean()
    if not enabled and target == "aws":
        raise s["admissionPolicy"].fail(
            "must stay true on EKS (every supported version has the API); "
            "only the local target may turn it off, for clusters older than 1.30"
        )
    return enabled


def _tls(s: Section, production: bool) -> bool:
    """Mutual TLS on every Dask connection; off only for throwaway clusters, never in production: without
    it any pod that reaches the scheduler port can run code as the scheduler."""
    enabled = s["tls"].boolean()
    if not enabled and production:
        raise s["tls"].fail(
            f"must stay true in a production stack ({PROJECT}:production=true); "
            "plaintext Dask is for throwaway clusters only"
        )
    return enabled


def _client_groups(field: Field) -> tuple[str, ...]:
    """Kubernetes groups (e.g. from EKS access entries) allowed to read the client certificate and
    port-forward to the scheduler: being able to connect is what the client Role grants."""
    groups = field.strings(unique=True)
    for item in field.items():
        if not item.value.strip() or item.value.startswith("system:"):
            raise item.fail("must be a group name of your own (not empty, not a built-in 'system:' group)")
    return groups


def _api_server(s: Section, aws: AwsConfig | None) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Where the scheduler may open connections to the API server (its egress NetworkPolicy): CIDRs, ports.

    aws: the VPC CIDR (the control plane's ENIs, which the endpoints of the `kubernetes` Service and the
    private endpoint's name lead to) and the `kubernetes` Service's own IP, the first of the Service range
    (the preload dials KUBERNETES_SERVICE_HOST, and an enforcer that matches before kube-proxy's DNAT, like
    the VPC CNI's eBPF agent, sees that address), on 443. local: the API server's address is unknown, so
    any IPv4 address on the ports API servers use (LOCAL_API_SERVER_PORTS). Either can be narrowed."""
    if aws is not None:
        service_ip = next(ipaddress.ip_network(aws.cluster.service_cidr).hosts())
        cidrs: list[str] = [aws.network.cidr, f"{service_ip}/32"]
        ports: list[int] = [443]
    else:
        cidrs, ports = ["0.0.0.0/0"], list(LOCAL_API_SERVER_PORTS)
    cidr_field = s.with_default("apiServerCidrs", cidrs)
    networks = []
    for item in cidr_field.items():
        try:
            networks.append(str(ipaddress.ip_network(item.string(), strict=True)))
        except ValueError as exc:
            raise item.fail(f"must be a CIDR with no host bits set, e.g. 10.0.0.0/16 ({exc})") from exc
    port_field = s.with_default("apiServerPorts", ports)
    numbers = [item.integer(1, 65535) for item in port_field.items()]
    for field, values in ((cidr_field, networks), (port_field, numbers)):
        if not values:
            raise field.fail("must list at least one value: without it the preload cannot reach the API")
    return tuple(dict.fromkeys(networks)), tuple(dict.fromkeys(numbers))


def _worker_instance_types(aws: AwsConfig) -> list[str]:
    """Every worker instance type, each one known to the sizing table (pods must fit all of them)."""
    if not aws.workers:
        raise ConfigError(f"{PROJECT}:workerGroups", [], "the aws target needs at least one worker group")
    types = []
    for group in aws.workers:
        for ti, itype in enumerate(group.instance_types):
            if itype not in instance_types.INSTANCE_TYPES:
                raise ConfigError(
                    f"{group.key}.instanceTypes[{ti}]",
                    itype,
                    "worker pods are sized from a table of known instance types: "
                    + ", ".join(sorted(instance_types.INSTANCE_TYPES)),
                )
            types.append(itype)
    return types


def _size_workers(s: Section, target: str, aws: AwsConfig | None) -> tuple[int, WorkerSizing]:
    if target == "local":
        if s.has("workersPerNode"):
            raise s["workersPerNode"].fail(
                "only the aws target sizes workers per node; set workerCpu and workerMemory"
            )
        per_node = 1
        cpu = _unset_to(s["workerCpu"].cpu_millicores(), 1000)
        memory = _unset_to(s["workerMemory"].memory_mib(), 2048)
    else:
        assert aws is not None
        capacity = sizing.smallest_capacity(_worker_instance_types(aws))
        per_node = s.with_default("workersPerNode", 1).integer(1, 64)
        share = sizing.per_worker_share(capacity, per_node)
        cpu = _unset_to(s["workerCpu"].cpu_millicores(), share.cpu_millicores)
        memory = _unset_to(s["workerMemory"].memory_mib(), share.memory_mib)
        fit = (
            f"{per_node} worker(s) per node of the smallest worker instance type leave "
            f"{share.cpu_millicores}m CPU and {share.memory_mib}Mi memory each"
        )
        if cpu > share.cpu_millicores:
            raise s["workerCpu"].fail(f"does not fit: {fit}")
        if memory > share.memory_mib:
            raise s["workerMemory"].fail(f"does not fit: {fit}")
    for name, amount, least, unit in (
        ("workerCpu", cpu, sizing.MIN_WORKER_CPU_MILLICORES, "m CPU"),
        ("workerMemory", memory, sizing.MIN_WORKER_MEMORY_MIB, "Mi"),
    ):
        if amount < least:
            blamed = s[name] if s.has(name) else Field(s["workersPerNode"].key, per_node)
            raise blamed.fail(f"leaves {amount}{unit} per worker; at least {least}{unit} is needed")
    most = sizing.max_threads(cpu)
    threads = s.with_default("workerThreads", sizing.default_threads(cpu)).integer(1)
    if threads > most:
        raise ConfigError(
            s["workerThreads"].key,
            threads,
            f"more threads than the worker's {cpu}m CPU can run; at most {most}",
        )
    return per_node, WorkerSizing(cpu, memory, threads, sizing.dask_memory_limit_bytes(memory))


def _scratch_mib(s: Section, per_node: int, aws: AwsConfig | None) -> int:
    disks = [g.disk_gib for g in aws.workers] if aws else []
    scratch = _unset_to(s["scratchSize"].memory_mib(), sizing.default_scratch_mib(disks, per_node))
    if s.has("scratchSize"):
        if scratch < sizing.MIN_SCRATCH_MIB:
            raise s["scratchSize"].fail("must be at least 1Gi")
        for group in aws.workers if aws else ():
            if scratch * per_node > sizing.scratch_budget_mib(group.disk_gib):
                raise s["scratchSize"].fail(
                    f"x {per_node} worker(s) per node exceeds {sizing.SCRATCH_DISK_FRACTION:.0%} of the "
                    f"{group.disk_gib} GiB disk of worker group {group.name!r}"
                )
    elif scratch < sizing.MIN_SCRATCH_MIB:
        # Several workers on a small disk: name the key the user set, with the numbers.
        assert aws is not None
        group = min(aws.workers, key=lambda g: g.disk_gib)
        why = (
            f"{per_node} worker(s) per node x the 1Gi minimum scratch space need {per_node * 1024}Mi, "
            f"more than {sizing.SCRATCH_DISK_FRACTION:.0%} of the {group.disk_gib} GiB disk of worker "
            f"group {group.name!r} ({sizing.scratch_budget_mib(group.disk_gib)}Mi)"
        )
        if s.has("workersPerNode"):
            raise ConfigError(
                s["workersPerNode"].key, per_node, f"{why}; lower it or raise {group.key}.diskGiB"
            )
        raise ConfigError(f"{group.key}.diskGiB", group.disk_gib, f"{why}; raise it")
    return scratch


def _check_scheduler_fits(s: Section, aws: AwsConfig, cpu: int, memory_mib: int) -> None:
    """The scheduler runs on a system node: it must fit one, or it stays Pending forever."""
    itype, itype_key = aws.system.instance_type, f"{PROJECT}:systemNodeGroup.instanceType"
    if itype not in instance_types.INSTANCE_TYPES:
        raise ConfigError(
            itype_key,
            itype,
            "the scheduler must fit a system node, and only instance types in infra/facts/instance_types.py "
            f"can be checked: use one of {', '.join(sorted(instance_types.INSTANCE_TYPES))}, or add this "
            "type to that table (vCPUs, memory GiB, ENI max pods)",
        )
    free = instance_types.pod_capacity(itype)
    if cpu <= free.cpu_millicores and memory_mib <= free.memory_mib:
        return
    bad = "schedulerCpu" if cpu > free.cpu_millicores else "schedulerMemory"
    fit = f"{itype} system node ({free.cpu_millicores}m CPU, {free.memory_mib}Mi free for pods)"
    if s.has(bad):
        raise s[bad].fail(f"does not fit a {fit}")
    raise ConfigError(
        itype_key,
        itype,
        f"the scheduler's default {cpu}m CPU / {memory_mib}Mi does not fit a {fit}; choose a larger type "
        f"or set {s[bad].key}",
    )


def parse_dask(
    s: Section, *, target: str, aws: AwsConfig | None, default_namespace: str, production: bool = False
) -> DaskSettings:
    """`adaptive-dask:dask`; `aws` carries the worker and system groups (None for the local target)."""
    namespace = s["namespace"].optional_string() or default_namespace
    if len(namespace) > 63 or not _LABEL.match(namespace):
        raise ConfigError(
            s["namespace"].key, namespace, "must be a DNS-1123 label (a-z, 0-9, '-', at most 63)"
        )
    if namespace in SYSTEM_NAMESPACES or namespace.startswith("kube-"):
        raise ConfigError(
            s["namespace"].key,
            namespace,
            "must be a namespace of its own: the program creates it (and deletes it on destroy); "
            f"{', '.join(SYSTEM_NAMESPACES)} and any 'kube-' name belong to the cluster",
        )
    image = _image(s["image"], production)
    per_node, worker = _size_workers(s, target, aws)
    room = sizing.worker_room((g.max_size for g in aws.workers), per_node) if aws else None
    min_workers = s["minWorkers"].integer(0, 10_000)
    max_workers = s.with_default("maxWorkers", room or 4).integer(1, 10_000)
    if min_workers > max_workers:
        raise ConfigError(s["minWorkers"].key, min_workers, f"must not exceed maxWorkers ({max_workers})")
    if room is not None and max_workers > room:
        raise ConfigError(
            s["maxWorkers"].key,
            max_workers,
            f"the worker groups hold at most {room} workers (sum of maxSize x workersPerNode {per_node})",
        )
    scratch = _scratch_mib(s, per_node, aws)
    scheduler_cpu = _unset_to(s["schedulerCpu"].cpu_millicores(), 1000 if aws else 500)
    scheduler_mem = _unset_to(s["schedulerMemory"].memory_mib(), 2048 if aws else 1024)
    if scheduler_cpu < 100 or scheduler_mem < 512:
        bad = "schedulerCpu" if scheduler_cpu < 100 else "schedulerMemory"
        raise s[bad].fail("the scheduler needs at least 100m CPU and 512Mi")
    placement = None
    if aws is not None:
        _check_scheduler_fits(s, aws, scheduler_cpu, scheduler_mem)
        taints = [WORKER_TAINT, *(t for g in aws.workers for t in g.taints)]
        placement = WorkerPlacement(
            pools=tuple(g.name for g in aws.workers), taints=tuple(dict.fromkeys(taints))
        )
    api_server_cidrs, api_server_ports = _api_server(s, aws)
    return DaskSettings(
        target=target,
        namespace=namespace,
        image=image,
        min_workers=min_workers,
        max_workers=max_workers,
        interval=s["interval"].seconds(0.1, 300),
        target_duration=s["targetDuration"].seconds(0.1, 3600),
        scale_down_delay=s["scaleDownDelay"].seconds(0, 86_400),
        workers_per_node=per_node,
        worker=worker,
        scheduler_cpu_millicores=scheduler_cpu,
        scheduler_memory_mib=scheduler_mem,
        scratch_mib=scratch,
        termination_grace_seconds=s["terminationGracePeriodSeconds"].integer(30, 3600),
        dashboard_cidrs=_dashboard_cidrs(s),
        placement=placement,
        client_namespace_selectors=_selectors(s["allowedClientNamespaces"]),
        client_pod_selectors=_selectors(s["allowedClientPods"]),
        admission_policy=_admission_policy(s, target),
        tls=_tls(s, production),
        client_groups=_client_groups(s["clientGroups"]),
        headroom_workers=s["headroomWorkers"].integer(0, max_workers),
        min_workers_schedule=min_workers_schedule(s["minWorkersSchedule"], max_workers),
        kubernetes_version=aws.cluster.version if aws else None,
        api_server_cidrs=api_server_cidrs,
        api_server_ports=api_server_ports,
        worker_egress_deny_private=s.with_default("workerEgressDenyPrivate", target == "aws").boolean(),
        data_access=parse_data_access(s, target),
        preload_options=preload_options(s),
        jupyter=parse_jupyter(
            Section(s["jupyter"].key, s["jupyter"].value, JUPYTER_DEFAULTS),
            target=target,
            aws=aws,
            scheduler=Resources(scheduler_cpu, scheduler_mem),
            tls=_tls(s, production),
            stock_image=is_stock_image(image),
        ),
        monitoring=parse_monitoring(Section(s["monitoring"].key, s["monitoring"].value, MONITORING_DEFAULTS)),
    )


def parse_kubernetes(
    cfg: ConfigReader,
    *,
    target: str,
    aws: AwsConfig | None,
    default_namespace: str,
    production: bool = False,
) -> tuple[DaskSettings, AutoscalerSettings | None, str | None]:
    """The three keys of this layer, each refused where the target has no use for it."""
    dask = parse_dask(
        cfg.section("dask", DASK_DEFAULTS),
        target=target,
        aws=aws,
        default_namespace=default_namespace,
        production=production,
    )
    autoscaler = None
    if aws is not None:
        autoscaler = parse_autoscaler(cfg.section("autoscaler", AUTOSCALER_DEFAULTS), aws=aws)
    elif cfg.is_set("autoscaler"):
        raise cfg.json("autoscaler", None).fail("the local target has no cluster-autoscaler")
    context = cfg.raw("kubeContext", None)
    if context.value is not None and target != "local":
        raise context.fail("only the local target uses a kubeconfig context")
    if context.value is not None and not context.string().strip():
        raise context.fail("must name a context of your kubeconfig")
    return dask, autoscaler, context.value
