"""Pure builders of the in-cluster notebook's Kubernetes objects (`dask.jupyter`; plain dicts).

One JupyterLab pod (a Deployment of 1, `Recreate`: its home volume is ReadWriteOnce) on the cluster's own
image, so client and cluster versions match; its runtime (command, server config, Dask client env) is
`infra/k8s/jupyter_lab.py`'s. What it holds, and why:
- the CLIENT certificate only (client auth): code in the notebook can reach the scheduler as a client,
  never serve as the cluster;
- no API credentials in the lab: the ServiceAccount token is projected into the init container alone,
  whose Role may get and patch the token Secret by name and nothing else (`jupyter_token.py`);
- its own labels (`app.kubernetes.io/name: dask-notebook`), NOT the Dask pods' `name: dask`: the
  workers admit every `name: dask` pod of the stack on any port, and the notebook must reach the
  scheduler only (network_policies.py `notebook_policies`).
"""

from __future__ import annotations

import hashlib
import inspect
import json

from infra.config.settings import DaskSettings
from infra.facts.placement import POOL_LABEL, tolerations
from infra.k8s import dask_objects as kd
from infra.k8s import jupyter_lab as lab
from infra.k8s import jupyter_token
from infra.k8s.tls_mount import CLIENT_SECRET

NOTEBOOK = "dask-notebook"  # Deployment, Service, ServiceAccount
HOME_CLAIM = "dask-notebook-home"
TOKEN_SECRET = "dask-notebook-token"
TOKEN_ROLE = "dask-notebook-token"  # Role and RoleBinding
CONFIG_MAP = "dask-notebook-config"
CONFIG_DIR = "/etc/jupyter"
HOME = "/home/notebook"
TOKEN_DIR = "/var/run/jupyter-token"
TOKEN_PATH = f"{TOKEN_DIR}/{lab.TOKEN_FILE_NAME}"
TLS_DIR = "/etc/dask-tls"
TOKEN_SCRIPT = "jupyter_token.py"
CONFIG_HASH_ANNOTATION = "adaptive-dask/notebook-config-sha256"
INIT_CPU_MILLICORES, INIT_MEMORY_MIB = 100, 128  # below the lab's: the quota counts the larger


def selector_labels(names: kd.Names) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": NOTEBOOK,
        "app.kubernetes.io/instance": names.namespace,
        "app.kubernetes.io/component": "notebook",
    }


def labels(names: kd.Names, version: str | None) -> dict[str, str]:
    """`version` None: objects that must never change after creation (the token Secret)."""
    out = {**selector_labels(names), "app.kubernetes.io/part-of": "adaptive-dask"}
    out["app.kubernetes.io/managed-by"] = "pulumi"
    if version is not None:
        out["app.kubernetes.io/version"] = version
    return out


def _meta(name: str, names: kd.Names, version: str | None, **extra: object) -> dict:
    return {"name": name, "namespace": names.namespace, "labels": labels(names, version), **extra}


def config_files(settings: DaskSettings, names: kd.Names) -> dict[str, str]:
    """The ConfigMap's files: the lab's config folder, and the init container's script."""
    files = lab.lab_files(
        cull_idle_minutes=settings.jupyter.idle_cull_minutes,
        scheduler_host=names.scheduler_host,
        dashboard_port=kd.DASHBOARD_PORT,
        config_dir=CONFIG_DIR,
    )
    return {**files, TOKEN_SCRIPT: inspect.getsource(jupyter_token)}


def config_map(settings: DaskSettings, names: kd.Names) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(CONFIG_MAP, names, settings.dask_version),
        "data": config_files(settings, names),
    }


def token_secret(names: kd.Names) -> dict:
    """Created empty, its data ignored by Pulumi (`dask.py`): the init container fills it once."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(TOKEN_SECRET, names, None),
        "type": "Opaque",
    }


def service_account(names: kd.Names, version: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(NOTEBOOK, names, version),
        "automountServiceAccountToken": False,
    }


def token_role(names: kd.Names, version: str) -> dict:
    """Get and patch of the token Secret, by name: no list, no watch, no other Secret."""
    rule = {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [TOKEN_SECRET]}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(TOKEN_ROLE, names, version),
        "rules": [{**rule, "verbs": ["get", "patch"]}],
    }


def token_role_binding(names: kd.Names, version: str) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(TOKEN_ROLE, names, version),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": TOKEN_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": NOTEBOOK, "namespace": names.namespace}],
    }


def _size(mib: int) -> str:
    """A volume size as people write it (`10Gi`), the way `dask.jupyter.storage` was given."""
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def home_claim(settings: DaskSettings, names: kd.Names) -> dict:
    """The home volume. skipAwait: a WaitForFirstConsumer claim binds only once the pod exists, which
    Pulumi creates after it (older pulumi-kubernetes waited for Bound forever: its issue #895)."""
    spec: dict = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": _size(settings.jupyter.storage_mib)}},
    }
    if settings.jupyter.storage_class is not None:
        spec["storageClassName"] = settings.jupyter.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(HOME_CLAIM, names, settings.dask_version, annotations={kd.SKIP_AWAIT: "true"}),
        "spec": spec,
    }


def service(names: kd.Names, version: str) -> dict:
    """ClusterIP only: reached with `kubectl port-forward svc/dask-notebook` (jupyterSetup)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(NOTEBOOK, names, version),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(names),
            "ports": [
                {"name": "http-lab", "port": lab.LAB_PORT, "targetPort": "http-lab", "protocol": "TCP"}
            ],
        },
    }


def environment(names: kd.Names) -> dict[str, str]:
    """The lab's env: its home, its token file, and Dask's client settings (`Client()` just works)."""
    link = lab.dashboard_link(names.scheduler_host, kd.DASHBOARD_PORT)
    return {
        "HOME": HOME,
        **lab.lab_env(TOKEN_PATH),
        **lab.dask_client_env(
            scheduler_address=names.scheduler_address, tls_dir=TLS_DIR, dashboard_link=link
        ),
        "DASK_TEMPORARY_DIRECTORY": "/tmp",
    }


def _init_container(settings: DaskSettings) -> dict:
    command = ["python", f"{CONFIG_DIR}/{TOKEN_SCRIPT}", "--secret", TOKEN_SECRET]
    command += ["--key", lab.TOKEN_FILE_NAME, "--out", TOKEN_PATH]
    return {
        "name": "token",
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "resources": kd.guaranteed_resources(INIT_CPU_MILLICORES, INIT_MEMORY_MIB),
        "securityContext": kd.container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "token", "mountPath": TOKEN_DIR},
            {"name": "api-token", "mountPath": kd.SERVICE_ACCOUNT_PATH, "readOnly": True},
        ],
    }


def _lab_container(settings: DaskSettings, names: kd.Names) -> dict:
    probe = {"httpGet": {"path": lab.HEALTH_PATH, "port": "http-lab"}, "timeoutSeconds": 5}
    return {
        "name": "notebook",
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": lab.lab_command(lab.LAB_PORT, CONFIG_DIR, root_dir=HOME),
        "env": [{"name": k, "value": v} for k, v in environment(names).items()],
        "ports": [{"name": "http-lab", "containerPort": lab.LAB_PORT, "protocol": "TCP"}],
        "resources": kd.guaranteed_resources(settings.jupyter.cpu_millicores, settings.jupyter.memory_mib),
        "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 30, "failureThreshold": 10},
        "securityContext": kd.container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": "client-tls", "mountPath": TLS_DIR, "readOnly": True},
            {"name": "home", "mountPath": HOME},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def placement(settings: DaskSettings) -> dict:
    """Its pool (aws: the system pool or the named worker group, whose taints it tolerates)."""
    jupyter = settings.jupyter
    if jupyter.pool is None:
        return {}
    out: dict = {"nodeSelector": {POOL_LABEL: jupyter.pool}}
    if jupyter.taints:
        out["tolerations"] = tolerations(jupyter.taints)
    return out


def deployment(settings: DaskSettings, names: kd.Names) -> dict:
    version = settings.dask_version
    digest = hashlib.sha256(json.dumps(config_files(settings, names), sort_keys=True).encode()).hexdigest()
    pod_security = {**kd.pod_security_context(), "fsGroupChangePolicy": "OnRootMismatch"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        # Pulumi does not wait for the lab to be Ready: a notebook that cannot start (a team image without
        # the lab's packages, a volume still attaching) must not fail the `up` of the cluster the team
        # depends on.
        "metadata": _meta(NOTEBOOK, names, version, annotations={kd.SKIP_AWAIT: "true"}),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one pod at a time on the ReadWriteOnce home
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(names)},
            "template": {
                "metadata": {
                    "labels": labels(names, version),
                    # its kernels hold the user's work: cluster-autoscaler must not move it
                    "annotations": {CONFIG_HASH_ANNOTATION: digest[:16], kd.SAFE_TO_EVICT: "false"},
                },
                "spec": {
                    "serviceAccountName": NOTEBOOK,
                    "automountServiceAccountToken": False,  # projected into the init container only
                    "securityContext": pod_security,
                    "initContainers": [_init_container(settings)],
                    "containers": [_lab_container(settings, names)],
                    "volumes": [
                        {"name": "config", "configMap": {"name": CONFIG_MAP, "defaultMode": 0o444}},
                        {"name": "token", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                        kd.scheduler_token_volume(),
                        {"name": "client-tls", "secret": {"secretName": CLIENT_SECRET, "defaultMode": 0o440}},
                        {"name": "home", "persistentVolumeClaim": {"claimName": HOME_CLAIM}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                    **placement(settings),
                },
            },
        },
    }


def objects(settings: DaskSettings, names: kd.Names) -> list[dict]:
    """Every object of the notebook, in creation order; none when it is off."""
    if not settings.jupyter.enabled:
        return []
    version = settings.dask_version
    return [
        service_account(names, version),
        token_secret(names),
        token_role(names, version),
        token_role_binding(names, version),
        config_map(settings, names),
        home_claim(settings, names),
        service(names, version),
        deployment(settings, names),
    ]


def setup_instructions(names: kd.Names) -> str:
    """The `jupyterSetup` stack output: port-forward, read the token, open the lab."""
    ns = names.namespace
    return "\n".join(
        [
            f"kubectl -n {ns} port-forward svc/{NOTEBOOK} {lab.LAB_PORT}:{lab.LAB_PORT} &",
            f"kubectl -n {ns} get secret {TOKEN_SECRET} -o jsonpath='{{.data.{lab.TOKEN_FILE_NAME}}}' "
            "| base64 -d; echo",
            f"open http://localhost:{lab.LAB_PORT}/lab  # paste the token; then: "
            "from dask.distributed import Client; client = Client()",
        ]
    )
