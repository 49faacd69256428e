"""The meanings table of the configuration reference: for every `adaptive-dask:*` key (and the provider
keys the program reads), what may be set and what it does, with the validators' own constants filled in.
`infra/config/reference.py` checks it against the code's defaults and renders it.
"""

# ruff: noqa: RUF001 (the meanings are prose: en dashes for ranges, multiplication signs for products)
from __future__ import annotations

from typing import Any, NamedTuple

from infra.config import autoscaler as autoscaler_config
from infra.config import aws as aws_config
from infra.config import budget as budget_config
from infra.config import data_access, load, node_groups
from infra.config import jupyter as jupyter_config
from infra.config import kubernetes as kubernetes_config
from infra.facts import sizing
from infra.facts.placement import (
    ASG_TAG_KEY_MAX,
    MAX_NODE_TEMPLATE_KEY,
    NODE_TEMPLATE,
    POOL_LABEL,
)
from infra.facts.versions import CA_IMAGE_TAGS, SUPPORTED_KUBERNETES_VERSIONS


class Entry(NamedTuple):
    """One key: what may be set, what it does, and (`default`) what a computed default (None in the code)
    depends on; for a key with a default in code, `default` is a note appended to it."""

    allowed: str
    meaning: str
    default: str = ""


def _pattern(regex: Any) -> str:
    return regex.pattern.removeprefix("^").removesuffix("$")


def choices(values: tuple[Any, ...]) -> str:
    return " | ".join(f"`{v}`" for v in values)


def _mib(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


_A = aws_config
_N = node_groups
_PRIVATE = "10/8, 172.16/12, 192.168/16 or 100.64/10"
_RETENTION = f"CloudWatch retention value ({', '.join(map(str, _A.CLOUDWATCH_RETENTION_DAYS))})"
_DURATION = "seconds (`30`) or a duration (`90s`, `2m`)"
CA_MINORS = f"{min(CA_IMAGE_TAGS)}–{max(CA_IMAGE_TAGS)}"

# The one table of meanings, keyed by the full key below `adaptive-dask:` (top-level keys bare, keys of
# other namespaces with theirs). Order does not matter: the reference follows the code's defaults.
KEYS: dict[str, Entry] = {
    # ---------------------------------------------------------------------------------------- top level
    "target": Entry(
        choices(load.TARGETS),
        "`aws` builds VPC + EKS + node groups; `local` builds no AWS resource and reads no AWS key",
    ),
    "production": Entry(
        "bool",
        "production stack marker: a public API endpoint then needs an explicit CIDR allow-list without "
        "`0.0.0.0/0`; turns on EKS deletion protection (and tightens validation: see the keys below)",
    ),
    "namePrefix": Entry(
        f"string `{_pattern(load._NAME_PREFIX_RE)}`",
        "names are `<namePrefix>-<stack>` (also the EKS cluster name), so two stacks fit in one account",
    ),
    "tags": Entry(
        "object string→string",
        "extra tags on every taggable AWS resource (AWS provider default tags, plus launch-template tags for "
        f"instances/volumes/ENIs). {', '.join(f'`{k}`' for k in _A.BUILTIN_TAG_KEYS)} are always set and "
        "reserved; keys must not start with `aws:`",
    ),
    "kubeContext": Entry(
        "string (local only)",
        "a context of your kubeconfig (`$KUBECONFIG` or `~/.kube/config`)",
        "the current context",
    ),
    "aws:region": Entry("string (an AWS region name)", "region of the explicit AWS provider"),
    "pulumi:disable-default-providers": Entry(
        "list",
        "engine setting: every resource must use the program's explicit providers",
        "(stack files set `[aws, kubernetes]`)",
    ),
    # ------------------------------------------------------------------------------------------ network
    "network.cidr": Entry(
        f"IPv4 CIDR, /{_A.MIN_VPC_PREFIX}–/{_A.MAX_VPC_PREFIX}, inside {_PRIVATE}",
        "VPC CIDR; per AZ a private subnet of a quarter of it and a public one of a sixteenth",
    ),
    "network.azCount": Entry(
        "int 2–3",
        "availability zones used (one public + one private subnet each): the first ones the region offers, "
        "skipping zone IDs where EKS refuses a control plane (`use1-az3`, `usw1-az2`, `cac1-az3`, "
        "`cnn1-az4`: `EKS_UNSUPPORTED_ZONE_IDS` in `infra/aws/live.py`; names map to IDs per account). More "
        "than the region has is a `ConfigError` before anything is created",
    ),
    "network.natMode": Entry(
        choices(_A.NAT_MODES), "one shared NAT gateway (cheap) or one per AZ (an AZ outage stays local)"
    ),
    "network.flowLogs": Entry("bool", "VPC flow logs (all traffic) to a CloudWatch log group"),
    "network.flowLogRetentionDays": Entry(
        "CloudWatch retention value (as `cluster.logRetentionDays`)", "retention of the flow-log group"
    ),
    "network.zoneIds": Entry(
        "list of `azCount` zone IDs (`use1-az1`)",
        "pin the zones by ID, in order. Unset, the zones are computed on every run, so a zone that changes "
        "state (or joins the exclude list) would ask existing subnets to move and fail on CIDR conflicts. A "
        "pinned zone EKS does not accept now stops the run naming it",
        "**required in production**",
    ),
    # ------------------------------------------------------------------------------------------ cluster
    "cluster.version": Entry(
        f"quoted string, one of {', '.join(f'`{v}`' for v in SUPPORTED_KUBERNETES_VERSIONS)}",
        "EKS Kubernetes version (node groups follow it); quoted, because YAML reads `1.30` as the number 1.3",
    ),
    "cluster.endpointPublicAccess": Entry("bool", "public API endpoint"),
    "cluster.publicAccessCidrs": Entry(
        "list of IPv4 CIDRs",
        "allow-list for the public endpoint; empty means `0.0.0.0/0` outside production and is an error in "
        "production",
    ),
    "cluster.endpointPrivateAccess": Entry("bool", "private API endpoint inside the VPC"),
    "cluster.logTypes": Entry(
        f"list of {', '.join(f'`{t}`' for t in _A.CONTROL_PLANE_LOG_TYPES)}",
        "control-plane logs; `[]` turns logging (and its log group) off",
    ),
    "cluster.logRetentionDays": Entry(_RETENTION, "retention of `/aws/eks/<name>/cluster`"),
    "cluster.adminArns": Entry(
        "list of IAM role/user ARNs", "extra cluster-admin access entries (not STS session ARNs)"
    ),
    "cluster.previewArns": Entry(
        "list of IAM role/user ARNs (none also in `adminArns`)",
        f"CI's read-only preview roles: an access entry each in Kubernetes group `{_A.PREVIEW_GROUP}`, with "
        "no access policy and no RBAC. A preview needs only discovery and the OpenAPI schema (every "
        "authenticated user has them); its server-side dry-runs are refused 403 and pulumi-kubernetes then "
        "diffs client-side. Without an entry the Kubernetes half of a preview fails 401",
    ),
    "cluster.deployerAdmin": Entry(
        "bool",
        "cluster-admin access entry for the deploying identity (an assumed-role session is mapped to its "
        "IAM role via `aws.iam.get_session_context`); none is made when `adminArns` already lists that role "
        "(with or without its path: EKS allows one entry per principal). With `false` and the deployer not "
        "listed, the run warns: it then needs an entry made elsewhere to apply the Kubernetes layer",
    ),
    "cluster.serviceCidr": Entry(
        "IPv4 CIDR /12–/24 in RFC 1918, not overlapping `network.cidr`", "Kubernetes Service range"
    ),
    "cluster.supportType": Entry(
        choices(_A.SUPPORT_TYPES),
        "EKS upgrade policy. STANDARD: when a minor's 14 months of standard support end, EKS upgrades the "
        "control plane itself and the next `up` tries to go back (state drift). EXTENDED keeps the minor 12 "
        "more months at extra cost per cluster hour; upgrade on your schedule "
        "([Upgrading Kubernetes](operations.md#upgrading-kubernetes))",
        f"`{_A.DEFAULT_SUPPORT_TYPE[True]}` in production, else `{_A.DEFAULT_SUPPORT_TYPE[False]}`",
    ),
    "cluster.addonVersions": Entry(
        f"object: {' / '.join(f'`{a}`' for a in _A.MANAGED_ADDONS)} → `vX.Y.Z-eksbuild.N` or `{_A.LATEST}`",
        f"managed addon versions; `{_A.LATEST}` (or, outside production, no entry) resolves to the newest "
        "build for `version` on every run, so a routine `up` moves it. Addons a stack installs on request "
        f"take pins too: `{_A.POD_IDENTITY_AGENT}` (data access, notebook) and `{_A.EBS_CSI_DRIVER}` "
        "(notebook), which a production stack must then pin",
        f"**production pins all {len(_A.MANAGED_ADDONS)}**",
    ),
    "cluster.nodeAmiReleaseVersion": Entry(
        f"EKS AMI release `<version>.<patch>-<yyyymmdd>` for `version`, or `{_A.LATEST}`",
        f"the nodes' AL2023 AMI release. `{_A.LATEST}` reads SSM's "
        "`/aws/service/eks/optimized-ami/<version>/amazon-linux-2023/<arch>/standard/recommended/"
        "release_version` on each run, so a new AMI release (about weekly) rolls every node group, the "
        "system group and its scheduler included, at the next `pulumi up`",
        f"unset = `{_A.LATEST}` outside production; **production must pin**",
    ),
    # ---------------------------------------------------------------------------------- systemNodeGroup
    "systemNodeGroup.instanceType": Entry(
        "x86_64 EC2 instance type listed in `infra/facts/instance_types.py`",
        f"on-demand instances for system pods (label `{POOL_LABEL}=system`); the scheduler must fit one "
        "(checked from the table: add a missing type there)",
    ),
    "systemNodeGroup.size": Entry("int 1–10", "fixed size (min = max = desired)"),
    "systemNodeGroup.diskGiB": Entry(f"int {_N.MIN_DISK_GIB}–{_N.MAX_DISK_GIB}", "encrypted gp3 root volume"),
    # ------------------------------------------------------------------------------------- workerGroups
    "workerGroups.name": Entry(
        f"string `{_pattern(_N._GROUP_NAME_RE)}`, unique, not "
        f"{', '.join(f'`{n}`' for n in _N.RESERVED_NODE_GROUP_NAMES)}",
        "pool name",
        "(required)",
    ),
    "workerGroups.instanceTypes": Entry(
        "non-empty list of x86_64 EC2 instance types from the sizing table (arm64 is refused)",
        "instance types (several help SPOT capacity)",
    ),
    "workerGroups.capacityType": Entry(choices(_N.CAPACITY_TYPES), "purchase option"),
    "workerGroups.minSize": Entry(
        f"int 0–{_N.MAX_NODE_GROUP_SIZE}", "autoscaler floor (also the initial desired size)"
    ),
    "workerGroups.maxSize": Entry(f"int 1–{_N.MAX_NODE_GROUP_SIZE}, ≥ `minSize`", "autoscaler ceiling"),
    "workerGroups.diskGiB": Entry(
        f"int {_N.MIN_DISK_GIB}–{_N.MAX_DISK_GIB}",
        "encrypted gp3 root volume (also the advertised ephemeral storage)",
    ),
    "workerGroups.labels": Entry(
        f"object: Kubernetes label key (at most {MAX_NODE_TEMPLATE_KEY} characters) → value",
        f"extra node labels; prefixes {', '.join(f'`{p}`' for p in _N.RESERVED_LABEL_PREFIXES)} are "
        "reserved. The key limit: cluster-autoscaler reads labels and taints of a zero-node group from ASG "
        f"tags `{NODE_TEMPLATE}/label/<key>`, and ASG tag keys stop at {ASG_TAG_KEY_MAX} characters",
    ),
    "workerGroups.taints": Entry(
        f"list of `{{key (at most {MAX_NODE_TEMPLATE_KEY} characters), value?, effect}}`, effect "
        f"{choices(_N.TAINT_EFFECTS)}",
        "extra taints (Dask worker pods must tolerate them)",
    ),
    # ------------------------------------------------------------------------------------------- images
    "images.repository": Entry(
        "bool",
        "an ECR repository of the stack's own for the team's Dask image (`<namePrefix>-<stack>/dask`): "
        "immutable tags, scan on push, KMS encryption; the nodes pull through their role's "
        "`AmazonEC2ContainerRegistryReadOnly`",
    ),
    "images.keepImages": Entry(
        "int 1–1000", "the repository's lifecycle policy keeps this many newest images (tagged or not)"
    ),
    # ------------------------------------------------------------------------------------------- budget
    "budget.monthlyUsd": Entry(
        "number > 0 (US dollars, at most two decimals)",
        "the monthly limit of an AWS Budget on the stack's `Stack` tag (`user:Stack$<stack>`); see "
        "[Cost](cost.md#seeing-the-bill)",
        "required when `budget` is set",
    ),
    "budget.emails": Entry(
        f"list of 1–{budget_config.MAX_EMAILS} e-mail addresses",
        "who gets the alerts; documentation domains "
        f"({', '.join(budget_config.PLACEHOLDER_EMAIL_DOMAINS)}) are refused when deploying into a real "
        "account",
        "required when `budget` is set",
    ),
    "budget.thresholds": Entry(
        f"list of 1–{budget_config.MAX_THRESHOLDS} percentages in (0, {budget_config.MAX_THRESHOLD_PERCENT}]",
        "an alert on actual spend and one on AWS's month-end forecast at each percentage of `monthlyUsd` "
        f"(two notifications each; AWS allows {budget_config.MAX_NOTIFICATIONS} per budget)",
    ),
    # --------------------------------------------------------------------------------------------- dask
    "dask.namespace": Entry(
        "DNS label", "namespace of everything Dask", "the stack's name (`<namePrefix>-<stack>`)"
    ),
    "dask.image": Entry(
        "image ref with tag or digest",
        "scheduler + worker image; the stock image must carry the dask/distributed release pinned in "
        "`requirements.txt`; `latest` is refused; in production any other image must be pinned by digest",
    ),
    "dask.minWorkers": Entry("int ≥ 0", "preload `--min-workers`"),
    "dask.maxWorkers": Entry(
        "int ≥ 1",
        "preload `--max-workers`; must be ≥ minWorkers and (aws) ≤ that capacity",
        "aws: what the worker groups hold (Σ maxSize × workersPerNode); local: `4`",
    ),
    "dask.interval": Entry(_DURATION, "preload `--interval`"),
    "dask.targetDuration": Entry(_DURATION, "preload `--target-duration`"),
    "dask.scaleDownDelay": Entry(_DURATION, "preload `--scale-down-delay` (stabilization window)"),
    "dask.workersPerNode": Entry(
        "int 1–64 (aws only)", "worker pods per node of the smallest worker instance type", "`1` (aws)"
    ),
    "dask.workerThreads": Entry(
        "int ≥ 1",
        "`--nthreads`, and the preload's `--worker-threads`; at most the CPU rounded up",
        "CPU rounded to whole cores",
    ),
    "dask.workerCpu": Entry(
        "CPU quantity",
        "container request = limit; aws: must fit that share",
        "aws: the node's pod capacity / workersPerNode; local: `1`",
    ),
    "dask.workerMemory": Entry(
        "memory quantity",
        f"container request = limit (≥ {_mib(sizing.MIN_WORKER_MEMORY_MIB)}); Dask's `--memory-limit` is "
        f"this minus {sizing.NANNY_OVERHEAD_MIB}Mi for the nanny",
        "aws: as `workerCpu`; local: `2Gi`",
    ),
    "dask.schedulerCpu": Entry(
        "CPU quantity (≥ 100m)",
        "scheduler request = limit; aws: must fit a system node",
        "aws `1`, local `500m`",
    ),
    "dask.schedulerMemory": Entry(
        "memory quantity (≥ 512Mi)",
        "scheduler request = limit; aws: must fit a system node",
        "aws `2Gi`, local `1Gi`",
    ),
    "dask.scratchSize": Entry(
        f"memory quantity ≥ {_mib(sizing.MIN_SCRATCH_MIB)}",
        f"`emptyDir` at `/scratch` (spilling); × workersPerNode ≤ {sizing.SCRATCH_DISK_FRACTION:.0%} of the "
        "group's disk",
        f"`{_mib(sizing.DEFAULT_SCRATCH_MIB)}` (less if N workers share a small disk)",
    ),
    "dask.terminationGracePeriodSeconds": Entry(
        "int 30–3600",
        "time a SIGTERMed worker has to move its data (the worker preload gives up 15s earlier)",
    ),
    "dask.dashboardAllowedCidrs": Entry(
        "list of CIDRs",
        "non-empty: an internal NLB `LoadBalancer` Service restricted by `loadBalancerSourceRanges`",
        "(private)",
    ),
    "dask.dashboardAllowAnyCidr": Entry("bool", "must be `true` for `0.0.0.0/0` or `::/0` to be accepted"),
    "dask.allowedClientNamespaces": Entry(
        "list of label maps (namespace selectors, none empty)",
        "namespaces whose pods may open the scheduler port (NetworkPolicy); `kubectl port-forward` is not "
        "subject to NetworkPolicy and keeps working for whoever RBAC lets use it",
    ),
    "dask.allowedClientPods": Entry(
        "list of label maps (pod selectors in the Dask namespace, none empty)",
        "pods of the Dask namespace that may open the scheduler port",
    ),
    "dask.admissionPolicy": Entry(
        "bool",
        "the scheduler's ValidatingAdmissionPolicy (needs Kubernetes ≥ 1.30); only the `local` target may "
        "set `false`, for older clusters",
    ),
    "dask.tls": Entry(
        "bool",
        "mutual TLS on every Dask connection (per-stack CA, see [Security](security.md)); `false` is for "
        "throwaway clusters only and is refused when `production: true`",
    ),
    "dask.clientGroups": Entry(
        "list of Kubernetes group names (not `system:*`)",
        "groups bound to the `dask-client` Role: read the client certificate Secret, list pods/services, "
        "port-forward to the scheduler (e.g. the groups of your EKS access entries)",
    ),
    "dask.headroomWorkers": Entry(
        "int 0–`maxWorkers`",
        "placeholder pods holding warm room for this many workers (see [Cost](cost.md#cost-node-hours))",
    ),
    "dask.minWorkersSchedule": Entry(
        "string",
        "time-varying minimum, e.g. `Mon-Fri 08:00-18:00 Europe/London=4; Sat 10:00-14:00 UTC=1` (the "
        "preload's `--min-workers-schedule`; validated at preview; no window above `maxWorkers`)",
    ),
    "dask.apiServerCidrs": Entry(
        "list of CIDRs",
        "where the scheduler may open connections to the API server (its egress NetworkPolicy); narrow it on "
        "clusters whose API address you know",
        "aws: the VPC CIDR and the `kubernetes` Service IP (`/32`); local: `[0.0.0.0/0]`",
    ),
    "dask.apiServerPorts": Entry(
        "list of ports",
        "the API server's ports for the same rule",
        f"aws: `[443]`; local: `[{', '.join(map(str, kubernetes_config.LOCAL_API_SERVER_PORTS))}]`",
    ),
    "dask.workerEgressDenyPrivate": Entry(
        "bool",
        f"workers may not open connections to private ranges ({_PRIVATE.replace(' or ', ', ')}) beyond DNS, "
        "the scheduler and each other; the instance metadata address `169.254.169.254` is refused always. S3 "
        "through the VPC's gateway endpoint keeps working (public addresses); interface endpoints (private "
        "addresses) do not while this is on",
        "aws: `true`; local: `false`",
    ),
    "dask.dataBuckets": Entry(
        f"list of `{{bucket, prefix?, access?}}`: an S3 bucket name (no wildcard), an object-key prefix (no "
        f"`*` or `?`, no leading `/`), access {choices(data_access.ACCESS_LEVELS)} (default "
        f"`{data_access.BUCKET_ENTRY_DEFAULTS['access']}`)",
        "aws only: the S3 data the workers' own role (EKS Pod Identity, bound to the workers' ServiceAccount "
        "only) may list and read under the prefix, and with `readwrite` also write and delete; nothing else. "
        "Setting it or `workerPolicyArns` installs the `eks-pod-identity-agent` addon, which a production "
        "stack must pin in `cluster.addonVersions` too",
    ),
    "dask.dataKmsKeyArns": Entry(
        "list of KMS key ARNs (`arn:aws:kms:<region>:<account>:key/<id>`)",
        "aws only: keys of SSE-KMS objects in `dataBuckets` (which must be set); the workers' role may use "
        "them only through S3 in the stack's region",
    ),
    "dask.workerPolicyArns": Entry(
        "list of IAM policy ARNs (`arn:aws:iam::<account|aws>:policy/<name>`)",
        "aws only: extra managed policies attached to the workers' role",
    ),
    "dask.workerServiceAccountAnnotations": Entry(
        "object: Kubernetes annotation key → string",
        "local only: annotations on the workers' ServiceAccount, e.g. IRSA or another cloud's workload "
        "identity (on aws the workers' identity is the Pod Identity association `dataBuckets` / "
        "`workerPolicyArns` make)",
    ),
    "dask.jupyter": Entry(
        "object (below)",
        "the in-cluster JupyterLab notebook ([notebook.md](notebook.md)); its fields are in the next table",
    ),
    "dask.jupyter.enabled": Entry(
        "bool",
        "a JupyterLab in the Dask namespace on the cluster's image, with the client certificate, a token "
        "kept out of Pulumi state and a persistent home; refused on the stock image (no JupyterLab): build "
        "`image/` and set `dask.image` first; on aws it installs the `aws-ebs-csi-driver` and "
        "`eks-pod-identity-agent` addons, which a production stack must pin in `cluster.addonVersions`",
    ),
    "dask.jupyter.cpu": Entry(
        f"CPU quantity ≥ {jupyter_config.MIN_CPU_MILLICORES}m",
        "the notebook's CPU (requests = limits); on aws it must fit its pool (below)",
    ),
    "dask.jupyter.memory": Entry(
        f"memory quantity ≥ {_mib(jupyter_config.MIN_MEMORY_MIB)}",
        "the notebook's memory (requests = limits): JupyterLab and its kernels together",
    ),
    "dask.jupyter.storage": Entry(
        f"size {_mib(jupyter_config.MIN_STORAGE_MIB)}–16Ti",
        "its home volume (a PersistentVolumeClaim; aws: encrypted gp3, expandable later, not shrinkable)",
    ),
    "dask.jupyter.idleCullMinutes": Entry(
        f"int {jupyter_config.CULL_MINUTES[0]}–{jupyter_config.CULL_MINUTES[1]}",
        "idle kernels, and then the server, are culled after this long, so an abandoned notebook stops "
        "asking for workers",
    ),
    "dask.jupyter.nodeGroup": Entry(
        "`system` or a worker group's `name` (aws only)",
        "where the notebook runs; it must fit there: on the system pool beside the scheduler, CoreDNS and "
        "the EBS CSI controller (first-fit over `systemNodeGroup.size` nodes), on a worker group one node "
        "of its smallest instance type (its taints are tolerated)",
        "unset: `system` on aws, any node on local",
    ),
    "dask.jupyter.storageClass": Entry(
        "a StorageClass name (local only)",
        "the home volume's StorageClass on the local target (aws uses the program's encrypted gp3 class)",
        "unset: the cluster's default StorageClass",
    ),
    "dask.monitoring": Entry(
        "object (below)",
        "metrics where teams already look ([monitoring.md](monitoring.md)); its fields are in the next table",
    ),
    "dask.monitoring.podMonitor": Entry(
        "bool",
        "a `monitoring.coreos.com/v1` PodMonitor scraping the scheduler's and the workers' `/metrics` (the "
        "preload's metrics included); needs the Prometheus Operator's CRDs on the cluster (local: checked "
        "at preview; aws: install the operator before enabling it) and `prometheusNamespaces`",
    ),
    "dask.monitoring.podMonitorLabels": Entry(
        "object of label key → value",
        "labels on the PodMonitor, for a Prometheus that selects PodMonitors by label "
        "(kube-prometheus-stack: `release: <its release name>`)",
    ),
    "dask.monitoring.grafanaDashboard": Entry(
        "bool",
        'the Dask dashboard as a ConfigMap labelled `grafana_dashboard: "1"`, for the Grafana sidecar',
    ),
    "dask.monitoring.dashboardNamespace": Entry(
        "an existing namespace's name",
        "where the dashboard ConfigMap goes: the Grafana sidecar reads its own namespace unless its "
        "`searchNamespace` says otherwise",
        "unset: the Dask namespace",
    ),
    "dask.monitoring.prometheusNamespaces": Entry(
        "list of namespace names",
        "pods in these namespaces may reach the scheduler's and workers' metrics ports (NetworkPolicy, "
        "matched on `kubernetes.io/metadata.name`, which Kubernetes sets itself from 1.21)",
    ),
    # ---------------------------------------------------------------------------------------- autoscaler
    "autoscaler.scaleDownUnneededTime": Entry(
        "Go duration 1m–24h",
        "`--scale-down-unneeded-time` (short on purpose: see [Cost](cost.md#cost-node-hours))",
    ),
    "autoscaler.scaleDownDelayAfterAdd": Entry("Go duration 0–24h", "`--scale-down-delay-after-add`"),
    "autoscaler.maxNodeProvisionTime": Entry(
        "Go duration 1m–1h", "`--max-node-provision-time` (a spot group short of capacity fails over sooner)"
    ),
    "autoscaler.expander": Entry(
        choices(autoscaler_config.EXPANDERS),
        "`--expander`; `auto` = `priority,least-waste` with spot groups preferred when spot and on-demand "
        "groups both exist, else `least-waste`",
    ),
    "autoscaler.balanceSimilarNodeGroups": Entry("bool", "`--balance-similar-node-groups`"),
    "autoscaler.skipNodesWithLocalStorage": Entry(
        "bool",
        "`--skip-nodes-with-local-storage`; workers spill to `emptyDir`, so `true` would pin nodes forever",
    ),
    "autoscaler.skipNodesWithSystemPods": Entry("bool", "`--skip-nodes-with-system-pods`"),
    "autoscaler.scaleDownUtilizationThreshold": Entry(
        "number in (0, 1]",
        "`--scale-down-utilization-threshold`: a node whose pods request less than this share of it may be "
        "drained if they fit elsewhere (see [Cost](cost.md#cost-node-hours))",
    ),
}
