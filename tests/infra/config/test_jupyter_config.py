"""`dask.jupyter` (issue 23 §1): the notebook's settings, read as the CLI passes them, and every bad value
refused before anything is created, naming the key, the value and what is allowed."""

from __future__ import annotations

import dataclasses
import json

import pytest

from infra.config.jupyter import AWS_STORAGE_CLASS, JupyterSettings
from infra.config.kubernetes import DEFAULT_IMAGE, STOCK_IMAGE_REPOSITORY, is_stock_image
from infra.config.load import load_settings
from infra.config.settings import DASK_VERSION, AwsConfig, DaskSettings, SystemNodeGroupConfig
from infra.errors import ConfigError
from infra.facts import instance_types, system_pool
from infra.facts.instance_types import Resources
from infra.facts.placement import SYSTEM_POOL, WORKER_TAINT, Taint
from testbed.infra import builders
from testbed.infra.harness import install, load_stack_config, run_program, stack_names

NS = "adaptive-dask"
KEY = f"{NS}:dask.jupyter"
DEDICATED = Taint("dedicated", "notebooks", "NoSchedule")


def facts(system_size: int = 2, system_type: str = "t3.medium") -> AwsConfig:
    groups = (
        builders.group("spot", ("m6i.xlarge", "m5.xlarge"), "SPOT", max_size=10),
        builders.group("big", ("r6i.2xlarge",), max_size=2, taints=(DEDICATED,)),
    )
    cluster = builders.aws(groups, system_instance_type=system_type)
    return dataclasses.replace(cluster, system=SystemNodeGroupConfig(system_type, system_size, 30))


def dask(
    jupyter: dict | None, *, target: str = "aws", cluster: AwsConfig | None = None, **more
) -> DaskSettings:
    """`dask` as the CLI hands it: JSON text, every scalar of the notebook a string; on the team's image
    unless `image` is given (the stock one is refused with the notebook on)."""
    raw = {"image": builders.TEAM_IMAGE, **more, **({"jupyter": jupyter} if jupyter is not None else {})}
    aws = (cluster or facts()) if target == "aws" else None
    return builders.dask(json.dumps(raw), target=target, cluster=aws)


def refused(jupyter: dict, *, target: str = "aws", cluster: AwsConfig | None = None, **more) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        dask(jupyter, target=target, cluster=cluster, **more)
    return caught.value


def test_off_by_default_and_off_reads_nothing_else():
    assert dask(None).jupyter == JupyterSettings() and not JupyterSettings().enabled
    # disabled: the other values are not checked (a stack may keep its sizes while it is off)
    assert dask({"enabled": "false", "storage": "1Mi"}).jupyter.enabled is False


def test_cli_strings_on_aws_land_on_the_system_pool_with_the_programs_storage_class():
    j = dask(
        {"enabled": "true", "cpu": "500m", "memory": "2Gi", "storage": "20Gi", "idleCullMinutes": "30"}
    ).jupyter
    assert (j.enabled, j.cpu_millicores, j.memory_mib, j.storage_mib, j.idle_cull_minutes) == (
        True,
        500,
        2048,
        20 * 1024,
        30,
    )
    assert (j.pool, j.taints, j.storage_class) == (SYSTEM_POOL, (), AWS_STORAGE_CLASS)


def test_local_target_places_anywhere_and_takes_a_storage_class_of_the_cluster():
    j = dask({"enabled": True}, target="local").jupyter
    assert (j.pool, j.storage_class) == (None, None)  # the cluster's default StorageClass
    j = dask({"enabled": True, "storageClass": "standard"}, target="local").jupyter
    assert j.storage_class == "standard"


def test_a_named_worker_group_is_tolerated_with_all_its_taints():
    j = dask({"enabled": True, "nodeGroup": "big", "memory": "8Gi"}).jupyter
    assert j.pool == "big" and j.taints == (WORKER_TAINT, DEDICATED)
    assert dask({"enabled": True, "nodeGroup": "system"}).jupyter.pool == SYSTEM_POOL


@pytest.mark.parametrize(
    ("jupyter", "field", "says"),
    [
        ({"storage": "512Mi"}, "storage", "at least 1Gi"),
        ({"storage": "17Ti"}, "storage", "at most 16Ti"),
        ({"storage": "lots"}, "storage", "memory quantity"),
        ({"idleCullMinutes": "0"}, "idleCullMinutes", "between 5 and 10080"),
        ({"idleCullMinutes": "20000"}, "idleCullMinutes", "between 5 and 10080"),
        ({"idleCullMinutes": "soon"}, "idleCullMinutes", "whole number"),
        ({"cpu": "100m"}, "cpu", "at least 250m"),
        ({"memory": "512Mi"}, "memory", "at least 1024Mi"),
        (
            {"nodeGroup": "gpu"},
            "nodeGroup",
            "'system' (the default) or a worker group name: system, spot, big",
        ),
        ({"storageClass": "gp2"}, "storageClass", "is for the local target"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"typo": 1}, "typo", "unknown field"),
    ],
)
def test_bad_values_name_the_key_the_value_and_what_is_allowed(jupyter, field, says):
    err = refused({"enabled": "true", **jupyter})
    assert err.key == f"{KEY}.{field}", err
    assert err.value == {"enabled": "true", **jupyter}.get(field, err.value)
    assert says in err.allowed, err


@pytest.mark.parametrize(
    ("jupyter", "field", "says"),
    [
        ({"nodeGroup": "spot"}, "nodeGroup", "needs target aws"),
        ({"storageClass": "Not_A_Name"}, "storageClass", "StorageClass name"),
    ],
)
def test_local_target_refusals(jupyter, field, says):
    err = refused({"enabled": True, **jupyter}, target="local")
    assert err.key == f"{KEY}.{field}" and says in err.allowed, err


def test_plaintext_dask_has_no_notebook():
    err = refused({"enabled": True}, tls=False)
    assert err.key == f"{KEY}.enabled" and "dask.tls=true" in err.allowed


def test_too_big_for_any_system_node_names_memory_or_cpu_with_the_numbers():
    free = instance_types.pod_capacity("t3.medium")
    err = refused({"enabled": True, "memory": f"{free.memory_mib + 1}Mi"})
    assert (
        err.key == f"{KEY}.memory" and "2 x t3.medium" in err.allowed and str(free.memory_mib) in err.allowed
    )
    err = refused({"enabled": True, "cpu": f"{free.cpu_millicores + 1}m"})
    assert err.key == f"{KEY}.cpu", err


def test_what_fits_an_empty_node_may_not_fit_beside_the_scheduler():
    """One system node: the scheduler, CoreDNS and the EBS CSI controller leave less than 1Gi."""
    fits_alone = {"enabled": True, "cpu": "250m", "memory": "1Gi"}
    assert dask(fits_alone, cluster=facts(system_size=2)).jupyter.enabled
    err = refused(fits_alone, cluster=facts(system_size=1))
    assert err.key == f"{KEY}.memory" and "1 x t3.medium" in err.allowed, err
    assert "nodeGroup" in err.allowed  # says how to proceed
    # two nodes: scheduler and notebook each fit one, but then CoreDNS and the controller do not
    assert dask({"enabled": True, "memory": "2700Mi"}, schedulerMemory="2500Mi").jupyter.enabled
    err = refused({"enabled": True, "memory": "2900Mi"}, schedulerMemory="2500Mi")
    assert err.key == f"{KEY}.memory" and "CoreDNS" in err.allowed, err


def test_a_worker_group_must_hold_it_on_its_smallest_type():
    err = refused({"enabled": True, "nodeGroup": "spot", "memory": "20Gi"})
    assert err.key == f"{KEY}.memory" and "'spot'" in err.allowed, err
    assert dask({"enabled": True, "nodeGroup": "big", "memory": "40Gi"}).jupyter.memory_mib == 40 * 1024


def test_packing_is_first_fit_over_the_nodes():
    node = Resources(1000, 1000)
    assert system_pool.packs(node, 2, [Resources(600, 600), Resources(600, 600)])
    assert not system_pool.packs(node, 1, [Resources(600, 600), Resources(600, 600)])
    assert not system_pool.packs(node, 3, [Resources(1001, 10)])
    assert system_pool.packs(node, 1, [Resources(500, 200), Resources(500, 800)])
    # the EBS controller counts only when asked (the notebook needs it)
    scheduler = Resources(1000, 2048)
    assert len(system_pool.system_pods(scheduler, ebs_csi=True)) == 5
    assert system_pool.system_pods(scheduler, ebs_csi=False) == (scheduler, *system_pool.COREDNS)


# ---------------------------------------------------------------- through the whole config


def _config(jupyter: dict, production: bool, addons: dict | None = None) -> dict[str, str]:
    cluster = {**builders.PROD_CLUSTER, **({"addonVersions": addons} if addons else {})}
    return {
        f"{NS}:target": "aws",
        f"{NS}:production": str(production).lower(),
        f"{NS}:network": json.dumps(builders.PROD_NETWORK),
        f"{NS}:cluster": json.dumps(cluster),
        f"{NS}:dask": json.dumps({"image": builders.TEAM_IMAGE, "jupyter": jupyter}),
    }


def test_production_must_pin_the_addons_the_notebook_installs():
    install(stack="test", config=_config({"enabled": "true"}, production=True))
    with pytest.raises(ConfigError) as caught:
        run_program(load_settings)
    assert caught.value.key == f"{NS}:cluster.addonVersions"
    assert "aws-ebs-csi-driver" in caught.value.allowed and "dask.jupyter.enabled" in caught.value.allowed
    pins = {
        **builders.PROD_CLUSTER["addonVersions"],
        "aws-ebs-csi-driver": "v1.50.1-eksbuild.1",
        "eks-pod-identity-agent": "v1.3.9-eksbuild.3",
    }
    install(stack="test", config=_config({"enabled": "true"}, production=True, addons=pins))
    assert run_program(load_settings).dask.jupyter.enabled


@pytest.mark.parametrize("stack", stack_names())
def test_every_committed_stack_parses_with_the_notebook_off(stack):
    """None of them has the team's image yet (dask.image unset: the stock one), so none may enable it."""
    project, config, secrets = load_stack_config(stack)
    install(stack=stack, config=config, project=project, secret_keys=secrets)
    settings = run_program(load_settings)
    assert settings.dask.jupyter == JupyterSettings() and is_stock_image(settings.dask.image)


@pytest.mark.parametrize("target", ["aws", "local"])
@pytest.mark.parametrize("image", [DEFAULT_IMAGE, f"{STOCK_IMAGE_REPOSITORY}:{DASK_VERSION}"])
def test_the_stock_image_is_refused_with_the_notebook_on(target, image):
    err = refused({"enabled": "true"}, target=target, image=image)
    assert (err.key, err.value) == (f"{KEY}.enabled", "true")
    for said in ("jupyterlab", "dask-labextension", "jupyter-server-proxy", "image/", "set dask.image"):
        assert said in err.allowed, err
    # off, the stock image is fine (the scheduler and workers run on it)
    assert dask({"enabled": "false"}, target=target, image=image).jupyter == JupyterSettings()


@pytest.mark.parametrize(
    "image",
    [
        builders.TEAM_IMAGE,
        f"111122223333.dkr.ecr.us-east-1.amazonaws.com/adask-dev/dask:{builders.TEAM_IMAGE_TAG}",
        "registry.example.com/team/dask:2026.8.0-1",
    ],
)
def test_a_team_image_is_accepted_with_the_notebook_on(image):
    settings = dask({"enabled": "true"}, image=image)
    assert settings.jupyter.enabled and settings.image == image
