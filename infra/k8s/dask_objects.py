"""Pure builders for every Kubernetes object of the Dask layer (plain dicts, wire names).

The `DaskCluster` component only turns these into resources; tests validate them against the
Kubernetes OpenAPI schema and assert on them directly. The command lines here are the contract with
the `dask_adaptive` preload (option names) and with issue 4's kubelet harness (ports, paths, env).
"""

from __future__ import annotations

from dataclasses import dataclass

from dask_adaptive.command import scheduler_command as dask_scheduler_command
from dask_adaptive.command import worker_command as dask_worker_command
from dask_adaptive.command import worker_environment
from dask_adaptive.options import PreloadArgs
from infra.config.settings import DaskSettings
from infra.facts.placement import POOL_LABEL, SYSTEM_POOL, pool_placement, tolerations
from infra.facts.quantity import format_cpu_millicores, format_memory_mib
from infra.k8s import tls_mount
from infra.k8s.preload import HASH_ANNOTATION, MOUNT_PATH, PreloadFile, configmap_data, volume

SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
WORKER_DASHBOARD_PORT = 8788
WORKER_READY_PATH = "/dask-adaptive/ready"
SCRATCH_PATH = "/scratch"
HOSTNAME = "kubernetes.io/hostname"  # one topology domain per node
RUN_AS = 1000  # the stock image's user is root; pods must not run as root
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
SAFE_TO_EVICT_LOCAL_VOLUMES = "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes"
SIGTERM_MARGIN_SECONDS = 15
SKIP_AWAIT = "pulumi.com/skipAwait"  # the worker's own retirement timeout ends this long before SIGKILL
# Where every in-cluster client looks for its token, ca.crt and namespace; the preload's default
# `service-account-dir` (dask_adaptive/adaptive.yaml; a test pins the two together).
SERVICE_ACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
# The scheduler's token lifetime: the shortest the apiserver issues. The kubelet rewrites a projected token
# at 80% of it, and the preload re-reads its token file every minute and on a 401 (api.py TokenSource).
SCHEDULER_TOKEN_SECONDS = 600
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"  # published into every namespace by the controller-manager


@dataclass(frozen=True)
class Names:
    """In-cluster names; the namespace is per stack, so these can stay short and predictable."""

    namespace: str
    scheduler: str = "dask-scheduler"  # Deployment, Service and ServiceAccount
    worker: str = "dask-worker"  # Deployment and ServiceAccount
    dashboard: str = "dask-dashboard"  # optional LoadBalancer Service
    preload: str = "dask-adaptive-preload"  # ConfigMap
    role: str = "dask-scheduler-scaler"  # Role and RoleBinding
    client_role: str = "dask-client"  # Role and RoleBinding for users (client certificate, port-forward)
    protocol: str = "tcp"  # "tls" when the stack runs mutual TLS

    @classmethod
    def of(cls, settings: DaskSettings) -> Names:
        return cls(namespace=settings.namespace, protocol="tls" if settings.tls else "tcp")

    @property
    def scheduler_priority_class(self) -> str:
        """Cluster-scoped, so named per stack (the namespace is the stack's)."""
        return f"{self.namespace}-{self.scheduler}"

    @property
    def scheduler_host(self) -> str:
        return f"{self.scheduler}.{self.namespace}.svc.cluster.local"

    @property
    def scheduler_address(self) -> str:
        return f"{self.protocol}://{self.scheduler_host}:{SCHEDULER_PORT}"


# ---------------------------------------------------------------- labels


def labels(names: Names, component: str, version: str) -> dict[str, str]:
    """Recommended `app.kubernetes.io/*` labels on every object."""
    return {
        **selector_labels(names, component),
        "app.kubernetes.io/part-of": "adaptive-dask",
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/version": version,
    }


def selector_labels(names: Names, component: str) -> dict[str, str]:
    """The immutable subset used in selectors (no version: a Deployment selector cannot change)."""
    return {
        "app.kubernetes.io/name": "dask",
        "app.kubernetes.io/instance": names.namespace,
        "app.kubernetes.io/component": component,
    }


def selector_string(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


def object_meta(name: str, names: Names, component: str, version: str, **extra: dict) -> dict:
    return {"name": name, "namespace": names.namespace, "labels": labels(names, component, version), **extra}


# ---------------------------------------------------------------- namespace, RBAC, ConfigMap


def namespace(names: Names, version: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": names.namespace, "labels": labels(names, "namespace", version)},
    }


def preload_configmap(names: Names, version: str, files: tuple[PreloadFile, ...]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(names.preload, names, "preload", version),
        "data": configmap_data(files),
    }


# ---------------------------------------------------------------- command lines (the preload contract)


def scheduler_command(settings: DaskSettings, names: Names) -> list[str]:
    """Built by dask_adaptive from its options table: values by their Python names, no flag spelt here."""
    preload = PreloadArgs(
        backend="kubernetes",
        namespace=names.namespace,
        deployment=names.worker,
        selector=selector_string(selector_labels(names, "worker")),
        min_workers=settings.min_workers,
        max_workers=settings.max_workers,
        interval=settings.interval,
        target_duration=settings.target_duration,
        scale_down_delay=settings.scale_down_delay,
        # the workers' threads, from the same value as their own command line: a scale-up from zero
        # workers asks for workers, not cores (dask_adaptive.decisions.cold_target)
        worker_threads=settings.worker.threads,
        min_workers_schedule=settings.min_workers_schedule or None,
        # the label of the worker-seconds counter: the worker groups the Deployment may land on (which one a
        # pod is on is its Node's label, and the scheduler may not read Nodes); none on the local target
        worker_group="+".join(settings.placement.pools) if settings.placement else None,
        **settings.preload_options,
    )
    return dask_scheduler_command(
        preload, port=SCHEDULER_PORT, dashboard_address=f":{DASHBOARD_PORT}", tls=settings.tls
    )


def worker_command(settings: DaskSettings, names: Names) -> list[str]:
    """`$(POD_NAME)` is expanded by the kubelet from the env, so the Dask worker name is the pod name.

    The flags come from dask_adaptive's one builder, shared with its local backend (stdlib only)."""
    return dask_worker_command(
        names.scheduler_address,
        name="$(POD_NAME)",
        nthreads=settings.worker.threads,
        memory_limit=settings.worker.dask_memory_limit_bytes,
        dashboard_address=f":{WORKER_DASHBOARD_PORT}",
        local_directory=SCRATCH_PATH,
    )


# ---------------------------------------------------------------- pods


def container_security_context() -> dict:
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security_context() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict:
    """The `restricted` pod-level settings every pod of the stack shares (the notebook's too)."""
    return _pod_security_context()


def guaranteed_resources(cpu_millicores: int, memory_mib: int) -> dict:
    """requests == limits: Guaranteed QoS, so node memory pressure evicts these pods last."""
    amounts = {"cpu": format_cpu_millicores(cpu_millicores), "memory": format_memory_mib(memory_mib)}
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _env(extra: list[dict]) -> list[dict]:
    return [
        {"name": "PYTHONPATH", "value": MOUNT_PATH},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        {"name": "HOME", "value": "/tmp"},  # the root filesystem is read-only
        *extra,
    ]


def _http_probe(path: str, port: str, period: int, timeout: int, failures: int, delay: int = 0) -> dict:
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": delay,
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def _template_annotations(preload_hash: str, extra: dict) -> dict:
    return {HASH_ANNOTATION: preload_hash, **extra}


def scheduler_token_volume() -> dict:
    """The scheduler's API credentials as a projected volume, instead of the automounted token.

    The automounted token says 3607 s, but the apiserver extends that one lifetime so that old clients keep
    working (--service-account-extend-token-expiration; 90 days on EKS): a token stolen from the scheduler,
    which runs any client's code, would scale and delete pods for that long. This one is bound to the pod
    and lives `SCHEDULER_TOKEN_SECONDS`; the CA bundle and the namespace complete what the preload reads
    from the folder (api.py `KubeApi.in_cluster`)."""
    namespace_item = {
        "path": "namespace",
        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
    }
    return {
        "name": "api-token",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": SCHEDULER_TOKEN_SECONDS}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [namespace_item]}},
            ]
        },
    }


def scheduler_disruption_budget(settings: DaskSettings, names: Names) -> dict:
    """No voluntary eviction of the scheduler: it is one pod holding every result and task of the cluster.

    A node drain (`kubectl drain`, an EKS managed node-group update, cluster-autoscaler) evicts through the
    Eviction API, which refuses with 429 while this budget allows no disruption: the drain waits and a
    managed update fails loudly instead of restarting the scheduler. Deleting the pod is not an eviction:
    an operator rolls the system group when the cluster is idle (docs/operations.md). `maxUnavailable: 0`
    rather than `minAvailable: 1`: it means "zero voluntary disruptions" whatever the replica count (the
    controller reads it from the Deployment's scale), where `minAvailable: 1` would let one of two
    scheduler pods go.
    `IfHealthyBudget`: a scheduler that is running but not Ready (an event loop saturated by a big graph
    fails its probe) is refused too; a crash-looping one also blocks a drain until it is deleted by hand.
    Workers get no budget: cluster-autoscaler drains their nodes and they retire gracefully on SIGTERM.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(names.scheduler, names, "scheduler", settings.dask_version),
        "spec": {
            "maxUnavailable": 0,
            "selector": {"matchLabels": selector_labels(names, "scheduler")},
            "unhealthyPodEvictionPolicy": "IfHealthyBudget",
        },
    }


def scheduler_deployment(
    settings: DaskSettings,
    names: Names,
    files: tuple[PreloadFile, ...],
    preload_hash: str,
    tls_rollout: object = "",
) -> dict:
    version = settings.dask_version
    tls = tls_mount.tls_pod(settings, tls_rollout)
    placement: dict = {}
    if settings.target == "aws":
        placement = {"nodeSelector": {POOL_LABEL: SYSTEM_POOL}}  # untainted: no toleration needed
    container = {
        "name": "scheduler",
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        # `command`, not `args`: skips the image's entrypoint, which pip-installs EXTRA_PIP_PACKAGES.
        "command": scheduler_command(settings, names),
        "env": _env([{"name": "DASK_TEMPORARY_DIRECTORY", "value": "/tmp"}, *tls.env]),
        "ports": [
            {"name": "tcp-comm", "containerPort": SCHEDULER_PORT, "protocol": "TCP"},
            {"name": "http-dashboard", "containerPort": DASHBOARD_PORT, "protocol": "TCP"},
        ],
        "resources": guaranteed_resources(settings.scheduler_cpu_millicores, settings.scheduler_memory_mib),
        "readinessProbe": _http_probe("/health", "http-dashboard", period=10, timeout=5, failures=3, delay=5),
        # Generous: a restart loses every result the scheduler tracks, a slow event loop is not death.
        "livenessProbe": _http_probe(
            "/health", "http-dashboard", period=30, timeout=10, failures=10, delay=30
        ),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "preload", "mountPath": MOUNT_PATH, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "api-token", "mountPath": SERVICE_ACCOUNT_PATH, "readOnly": True},
            *tls.mounts,
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(names.scheduler, names, "scheduler", version),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # never two schedulers scaling one Deployment
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(names, "scheduler")},
            "template": {
                "metadata": {
                    "labels": labels(names, "scheduler", version),
                    # data-holding and not replicable: cluster-autoscaler must not move it
                    "annotations": _template_annotations(
                        preload_hash, {SAFE_TO_EVICT: "false", **tls.annotations}
                    ),
                },
                "spec": {
                    "serviceAccountName": names.scheduler,
                    # the preload calls the API with the short-lived token of `scheduler_token_volume`
                    "automountServiceAccountToken": False,
                    "priorityClassName": names.scheduler_priority_class,  # before its workers
                    "securityContext": _pod_security_context(),
                    "containers": [container],
                    "volumes": [
                        volume("preload", names.preload, files),
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                        scheduler_token_volume(),
                        *tls.volumes,
                    ],
                    **placement,
                },
            },
        },
    }


def pack_with(names: Names, component: str) -> dict:
    """Pods prefer a node that already runs pods of `component` of this stack: the bill counts nodes.

    Left to the default scoring, kube-scheduler spreads a ReplicaSet's pods over nodes (least-allocated
    and topology-spread scores): on the 1.20 control plane of the tests six workers land 2/2/2 on three
    nodes without this, 6/0/0 with it (tests/kube/test_packing.py). Preferred, never required: a full
    node still lets the next pod go elsewhere, and cluster-autoscaler adds a node for a Pending one.
    Workers pack with workers; headroom placeholders with each other (infra/k8s/headroom.py)."""
    term = {"labelSelector": {"matchLabels": selector_labels(names, component)}, "topologyKey": HOSTNAME}
    return {
        "podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}]
        }
    }


def worker_pool_placement(settings: DaskSettings, names: Names, component: str) -> dict:
    """On the worker pools (node selector, the pools' taints tolerated; none on the local target), packed
    with the stack's pods of `component` (`pack_with`)."""
    placement: dict = {}
    if settings.placement is not None:
        placement = pool_placement(settings.placement.pools)
        placement["tolerations"] = tolerations(settings.placement.taints)
    placement["affinity"] = {**placement.get("affinity", {}), **pack_with(names, component)}
    return placement


def worker_deployment(
    settings: DaskSettings,
    names: Names,
    files: tuple[PreloadFile, ...],
    preload_hash: str,
    tls_rollout: object = "",
) -> dict:
    version = settings.dask_version
    tls = tls_mount.tls_pod(settings, tls_rollout)
    placement = worker_pool_placement(settings, names, "worker")
    sigterm_timeout = max(5, settings.termination_grace_seconds - SIGTERM_MARGIN_SECONDS)
    container = {
        "name": "worker",
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": worker_command(settings, names),
        "env": _env(
            [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "DASK_TEMPORARY_DIRECTORY", "value": SCRATCH_PATH},
                # the worker preload's own deadline for a graceful retirement, inside the grace period
                *({"name": k, "value": v} for k, v in worker_environment(sigterm_timeout).items()),
                *tls.env,
            ]
        ),
        "ports": [{"name": "http-dashboard", "containerPort": WORKER_DASHBOARD_PORT, "protocol": "TCP"}],
        "resources": guaranteed_resources(settings.worker.cpu_millicores, settings.worker.memory_mib),
        # 503 once retiring: the ReplicaSet deletes NotReady pods first, i.e. exactly the retired ones.
        # One failure flips it (a retired pod goes NotReady within ~2s), but a slow answer gets 5s
        # first: a busy worker wrongly marked NotReady would be the one a scale-down deletes.
        # No livenessProbe: the nanny restarts a dead worker process, and a liveness kill during a
        # retirement would lose the very data being moved.
        "readinessProbe": _http_probe(WORKER_READY_PATH, "http-dashboard", period=2, timeout=5, failures=1),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "preload", "mountPath": MOUNT_PATH, "readOnly": True},
            {"name": "scratch", "mountPath": SCRATCH_PATH},
            {"name": "tmp", "mountPath": "/tmp"},
            *tls.mounts,
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        # Its pods' readiness is the preload's business (they may wait minutes for a new node); Pulumi
        # only has to create the object, so `pulumi up` does not time out while nodes are provisioned.
        "metadata": object_meta(names.worker, names, "worker", version, annotations={SKIP_AWAIT: "true"}),
        "spec": {
            # Owned by the preload after creation (Pulumi ignores it); 0 so nothing runs before asked.
            "replicas": 0,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(names, "worker")},
            "template": {
                "metadata": {
                    "labels": labels(names, "worker", version),
                    # Spill data is moved on SIGTERM, so the emptyDirs need not block node scale-down.
                    "annotations": _template_annotations(
                        preload_hash, {SAFE_TO_EVICT_LOCAL_VOLUMES: "scratch,tmp", **tls.annotations}
                    ),
                },
                "spec": {
                    "serviceAccountName": names.worker,
                    "automountServiceAccountToken": False,  # workers never call the Kubernetes API
                    "terminationGracePeriodSeconds": settings.termination_grace_seconds,
                    "securityContext": _pod_security_context(),
                    "containers": [container],
                    "volumes": [
                        volume("preload", names.preload, files),
                        {
                            "name": "scratch",
                            "emptyDir": {"sizeLimit": format_memory_mib(settings.scratch_mib)},
                        },
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                        *tls.volumes,
                    ],
                    **placement,
                },
            },
        },
    }
