"""Settings and config built directly for tests (no stack file).

- `group`, `aws`, `dask`, `autoscaler`: parsed settings for tests of the Kubernetes layer's config and
  components; `aws_settings()` / `local_settings()` a Dask layer for each target, `names_of()` its
  object names and `templates()` the pod templates the program registers for it.
- `prod()`: CLI-style stack config for a production stack, with the pins production requires
  (`PROD_NETWORK`, `PROD_CLUSTER`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import MappingProxyType

from infra.config.kubernetes import (
    AUTOSCALER_DEFAULTS,
    DASK_DEFAULTS,
    is_stock_image,
    parse_autoscaler,
    parse_dask,
)
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
from infra.k8s import dask_objects as kd
from infra.k8s import preload as kp

NS = "adaptive-dask"
DASK_KEY, AUTOSCALER_KEY = f"{NS}:dask", f"{NS}:autoscaler"
MAX_WORKERS = 5


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


# ---------------------------------------------------------------- a Dask layer per target, and its pods


def aws_settings(max_workers: int = MAX_WORKERS, cidrs: tuple[str, ...] = ("10.1.0.0/16",)) -> DaskSettings:
    cluster = aws((group("spot", ("m6i.2xlarge",), "SPOT", 10, 100),))
    raw = {"maxWorkers": max_workers, "dashboardAllowedCidrs": list(cidrs)}
    return dask(raw, target="aws", cluster=cluster, namespace="adask-dev")


def local_settings() -> DaskSettings:
    return dask(None, target="local", namespace="adask-local")


def names_of(settings: DaskSettings) -> kd.Names:
    return kd.Names(settings.namespace)


def templates(settings: DaskSettings) -> dict[str, dict]:
    """The pod templates the program registers, by component."""
    names, files = names_of(settings), kp.collect()
    digest = kp.content_hash(files)
    return {
        "scheduler": kd.scheduler_deployment(settings, names, files, digest)["spec"]["template"],
        "worker": kd.worker_deployment(settings, names, files, digest)["spec"]["template"],
    }


# ---------------------------------------------------------------- stack config of a production stack

# What a production stack must pin (zones by ID, the node AMI, every managed addon): merged into a test's
# own network/cluster objects so the test meets the check it is about, not these.
PROD_NETWORK = {"zoneIds": ["use1-az1", "use1-az2"]}
PROD_CLUSTER = {
    "publicAccessCidrs": ["198.51.100.0/24"],
    "nodeAmiReleaseVersion": "1.35.2-20261118",
    "addonVersions": {
        "vpc-cni": "v1.20.4-eksbuild.1",
        "kube-proxy": "v1.35.0-eksbuild.2",
        "coredns": "v1.12.4-eksbuild.1",
    },
}


def prod(network: dict | None = None, cluster: dict | None = None) -> dict[str, str]:
    """A production config with the pins production requires, plus the test's own fields."""
    return {
        f"{NS}:production": "true",
        f"{NS}:network": json.dumps({**PROD_NETWORK, **(network or {})}),
        f"{NS}:cluster": json.dumps({**PROD_CLUSTER, **(cluster or {})}),
    }


# ---------------------------------------------------------------- the in-cluster notebook (dask.jupyter)


NOTEBOOK_ADDON_PINS = {
    "aws-ebs-csi-driver": "v1.50.1-eksbuild.1",
    "eks-pod-identity-agent": "v1.3.9-eksbuild.3",
}


# The team's image as the image workflow writes it (`<repository-url>@sha256:<digest>`, pushed under the
# commit's tag): placeholders of that shape, so production's digest rule holds too. No registry is reached.
TEAM_IMAGE_TAG = "3f9a1c0e5b7d2468ace013579bdf2468ace01357"
TEAM_IMAGE_DIGEST = "sha256:" + "5e" * 32
TEAM_IMAGE = f"111122223333.dkr.ecr.us-east-1.amazonaws.com/adask-dev/dask@{TEAM_IMAGE_DIGEST}"


def team_image(stack: str) -> str:
    """A reference to `stack`'s own built image (image/: JupyterLab and its extensions on the Dask release):
    its ECR repository on aws, a team registry elsewhere."""
    from testbed.infra.harness import stack_value

    target = stack_value(stack, f"{NS}:target", "aws")
    region = stack_value(stack, "aws:region", "us-east-1")
    registry = f"111122223333.dkr.ecr.{region}.amazonaws.com" if target == "aws" else "registry.example.com"
    return f"{registry}/adask-{stack}/dask@{TEAM_IMAGE_DIGEST}"


# A small notebook for dev's system pool (two t3.medium): `jupyter_overrides("dev", **DEV_NOTEBOOK)`.
DEV_NOTEBOOK = {"cpu": "500m", "memory": "2Gi", "storage": "10Gi", "idleCullMinutes": 60}


def jupyter_overrides(stack: str, **fields: object) -> dict[str, str]:
    """Stack config overrides (CLI strings) that turn the notebook on in `stack` on the team's image (the
    stock one is refused), keeping the stack's other `dask` keys: `record_stack(stack,
    jupyter_overrides(stack))` / `run_stack(stack, overrides=...)`. `fields` are `dask.jupyter` keys
    (e.g. `idleCullMinutes=5`)."""
    from testbed.infra.harness import stack_value  # the harness imports pulumi's runtime: only when used

    dask_value = dict(stack_value(stack, DASK_KEY, {}) or {})
    jupyter = {**(dask_value.get("jupyter") or {}), "enabled": True, **fields}
    image = dask_value.get("image")
    if not image or is_stock_image(image):
        image = team_image(stack)
    out = {DASK_KEY: json.dumps({**dask_value, "image": image, "jupyter": jupyter})}
    if str(stack_value(stack, f"{NS}:production", False)).lower() == "true":
        # production pins the addons the notebook installs (placeholder builds, as PROD_CLUSTER's)
        cluster = dict(stack_value(stack, f"{NS}:cluster", {}) or {})
        cluster["addonVersions"] = {**NOTEBOOK_ADDON_PINS, **(cluster.get("addonVersions") or {})}
        out[f"{NS}:cluster"] = json.dumps(cluster)
    return out


def notebook_objects(settings: DaskSettings) -> list[dict]:
    """The notebook's objects as the program registers them for `settings` (none when it is off): the
    pure builders `DaskCluster` creates them from (infra/k8s/jupyter.py), in creation order."""
    from infra.k8s import jupyter

    return jupyter.objects(settings, kd.Names.of(settings))
