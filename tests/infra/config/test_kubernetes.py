"""Config of the Kubernetes layer: defaults, derived worker sizing, and bad values rejected early."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.config import kubernetes as kc
from infra.config.reader import ConfigReader
from infra.config.settings import (
    DASK_VERSION,
    AutoscalerSettings,
    AwsConfig,
    DaskSettings,
    WorkerGroupConfig,
    WorkerPlacement,
)
from infra.errors import ConfigError
from infra.facts import instance_types as it
from infra.facts import sizing
from infra.facts.placement import WORKER_TAINT, Taint
from testbed.infra import builders
from testbed.infra.harness import REPO_ROOT


def facts(
    groups: tuple[WorkerGroupConfig, ...] | None = None,
    system_instance_type: str = "t3.medium",
    kubernetes_version: str = "1.35",
) -> AwsConfig:
    """The AWS layer's settings this layer sizes from: two worker groups by default."""
    groups = groups or (
        builders.group("spot", ("m6i.xlarge", "m5.xlarge"), "SPOT", max_size=10, disk_gib=50),
        builders.group(
            "ondemand", ("m6i.xlarge",), "ON_DEMAND", max_size=4, disk_gib=50,
            taints=(Taint("dedicated", "dask", "NoSchedule"),),
        ),
    )  # fmt: skip
    return builders.aws(groups, version=kubernetes_version, system_instance_type=system_instance_type)


def dask(obj: dict | None = None, *, target: str = "aws", f: AwsConfig | None = None) -> DaskSettings:
    cluster = f or (facts() if target == "aws" else None)
    return builders.dask(None if obj is None else json.dumps(obj), target=target, cluster=cluster)


def autoscaler(obj: dict | None = None, f: AwsConfig | None = None) -> AutoscalerSettings:
    return builders.autoscaler(None if obj is None else json.dumps(obj), f or facts())


# ---------------------------------------------------------------- the image pin


def test_default_image_pins_the_dask_release_of_requirements_and_lock():
    pins = dict(
        re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line).groups()  # type: ignore[union-attr]
        for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
        if re.match(r"^[A-Za-z0-9_.-]+==", line)
    )
    assert pins["dask"] == pins["distributed"] == DASK_VERSION
    assert dask().image == f"ghcr.io/dask/dask:{pins['dask']}-py3.12"
    locked = re.findall(r"^(dask|distributed)==(\S+)", (REPO_ROOT / "requirements.lock").read_text(), re.M)
    assert sorted(locked) == [("dask", DASK_VERSION), ("distributed", DASK_VERSION)]  # the image = the lock


# ---------------------------------------------------------------- defaults and derived sizing


def test_aws_defaults_fill_the_smallest_worker_node_with_one_worker():
    s = dask()
    smallest = min((it.pod_capacity(t) for t in ("m6i.xlarge", "m5.xlarge")), key=lambda r: r.memory_mib)
    assert (s.worker.cpu_millicores, s.worker.memory_mib) == (smallest.cpu_millicores, smallest.memory_mib)
    assert s.worker.threads == 4  # 4 vCPUs, minus reservations, still rounds to 4 threads
    assert s.worker.dask_memory_limit_bytes == (s.worker.memory_mib - sizing.NANNY_OVERHEAD_MIB) * 2**20
    assert s.min_workers == 0 and s.max_workers == (10 + 4) * 1  # what the groups can hold
    assert s.namespace == "adask-dev"
    assert s.placement == WorkerPlacement(
        pools=("spot", "ondemand"), taints=(WORKER_TAINT, Taint("dedicated", "dask", "NoSchedule"))
    )
    assert s.dashboard_cidrs == ()


@pytest.mark.parametrize("per_node", ["2", "3", 4])
def test_n_workers_per_node_fill_it_without_overflowing(per_node):
    s = dask({"workersPerNode": per_node})
    n = int(per_node)
    cap = it.pod_capacity("m6i.xlarge")
    assert n * s.worker.cpu_millicores <= cap.cpu_millicores
    assert n * s.worker.memory_mib <= cap.memory_mib
    # and they do fill it: less than one worker's share is left over
    assert cap.memory_mib - n * s.worker.memory_mib < n
    assert s.max_workers == 14 * n


def test_explicit_values_that_fit_are_kept():
    s = dask(
        {
            "workerCpu": "2",
            "workerMemory": "8Gi",
            "workerThreads": "2",
            "minWorkers": "1",
            "maxWorkers": "6",
            "interval": "2s",
            "targetDuration": 10,
            "scaleDownDelay": "2m",
            "dashboardAllowedCidrs": ["10.20.0.0/16"],
            "scratchSize": "20Gi",
            "terminationGracePeriodSeconds": "300",
        }
    )
    assert (s.worker.cpu_millicores, s.worker.memory_mib, s.worker.threads) == (2000, 8192, 2)
    assert (s.min_workers, s.max_workers) == (1, 6)
    assert (s.interval, s.target_duration, s.scale_down_delay) == (2.0, 10.0, 120.0)
    assert s.dashboard_cidrs == ("10.20.0.0/16",)
    assert s.scratch_mib == 20 * 1024 and s.termination_grace_seconds == 300


def test_local_target_uses_explicit_sizes_and_no_node_groups():
    s = dask({"workerCpu": "500m", "workerMemory": "1536Mi"}, target="local")
    assert (s.worker.cpu_millicores, s.worker.memory_mib, s.worker.threads) == (500, 1536, 1)
    assert s.placement is None and s.max_workers == 4


def test_the_whole_any_cidr_needs_the_acknowledgement():
    s = dask({"dashboardAllowedCidrs": ["0.0.0.0/0"], "dashboardAllowAnyCidr": "true"})
    assert s.dashboard_cidrs == ("0.0.0.0/0",)


def test_autoscaler_defaults_are_tuned_for_dask():
    a = autoscaler()
    assert a.kubernetes_version == "1.35"
    assert a.expander == "priority,least-waste"  # spot and on-demand both exist
    assert a.flags == {
        "scale-down-unneeded-time": "1m",
        "scale-down-delay-after-add": "5m",
        "max-node-provision-time": "10m",
        "expander": "priority,least-waste",
        "balance-similar-node-groups": "true",
        "skip-nodes-with-local-storage": "false",
        "skip-nodes-with-system-pods": "false",
        "scale-down-utilization-threshold": "0.5",
        "expendable-pods-priority-cutoff": "-10",
    }


@pytest.mark.parametrize("value", ["0", "1.5", "half", "-0.2"])
def test_utilization_threshold_is_a_fraction(value):
    with pytest.raises(ConfigError) as caught:
        autoscaler({"scaleDownUtilizationThreshold": value})
    assert caught.value.key == "adaptive-dask:autoscaler.scaleDownUtilizationThreshold"
    assert (
        autoscaler({"scaleDownUtilizationThreshold": "0.3"}).flags["scale-down-utilization-threshold"]
        == "0.3"
    )


def test_autoscaler_overrides_as_the_cli_stores_them():
    a = autoscaler(
        {
            "scaleDownUnneededTime": "15m",
            "expander": "least-waste",
            "balanceSimilarNodeGroups": "false",
            "maxNodeProvisionTime": "5m",
        }
    )
    assert a.flags["scale-down-unneeded-time"] == "15m"
    assert a.flags["balance-similar-node-groups"] == "false"
    assert a.flags["expander"] == "least-waste"
    assert a.flags["max-node-provision-time"] == "5m"


def test_single_capacity_type_gets_least_waste():
    only_spot = facts(groups=(builders.group("spot", ("m6i.large",), "SPOT", 3),))
    assert autoscaler(f=only_spot).expander == "least-waste"


# ---------------------------------------------------------------- rejected, with the full key named

BAD_DASK = [
    ({"dashboardAllowedCidrs": ["10.0.0.0/33"]}, "adaptive-dask:dask.dashboardAllowedCidrs[0]"),
    ({"dashboardAllowedCidrs": ["10.0.0.1/8"]}, "adaptive-dask:dask.dashboardAllowedCidrs[0]"),
    ({"dashboardAllowedCidrs": ["10.0.0.0/8", "0.0.0.0/0"]}, "adaptive-dask:dask.dashboardAllowedCidrs[1]"),
    ({"dashboardAllowedCidrs": ["::/0"]}, "adaptive-dask:dask.dashboardAllowedCidrs[0]"),
    ({"dashboardAllowedCidrs": "10.0.0.0/8"}, "adaptive-dask:dask.dashboardAllowedCidrs"),
    (
        {"dashboardAllowedCidrs": ["0.0.0.0/0"], "dashboardAllowAnyCidr": "yes"},
        "adaptive-dask:dask.dashboardAllowAnyCidr",
    ),
    ({"image": "ghcr.io/dask/dask"}, "adaptive-dask:dask.image"),
    ({"image": "ghcr.io/dask/dask:latest"}, "adaptive-dask:dask.image"),
    ({"image": "ghcr.io/dask/dask:2024.5.0-py3.12"}, "adaptive-dask:dask.image"),
    ({"image": "Not An Image:1"}, "adaptive-dask:dask.image"),
    ({"workerMemory": "64Gi"}, "adaptive-dask:dask.workerMemory"),
    ({"workerCpu": "4"}, "adaptive-dask:dask.workerCpu"),
    ({"workersPerNode": 2, "workerMemory": "8Gi"}, "adaptive-dask:dask.workerMemory"),
    ({"workerThreads": 5}, "adaptive-dask:dask.workerThreads"),
    ({"workersPerNode": 20}, "adaptive-dask:dask.workersPerNode"),
    ({"workerMemory": "2G", "workerCpu": "100m"}, "adaptive-dask:dask.workerCpu"),
    ({"workerMemory": "lots"}, "adaptive-dask:dask.workerMemory"),
    ({"workerCpu": "2Gi"}, "adaptive-dask:dask.workerCpu"),
    ({"minWorkers": 5, "maxWorkers": 3}, "adaptive-dask:dask.minWorkers"),
    ({"minWorkers": -1}, "adaptive-dask:dask.minWorkers"),
    ({"maxWorkers": 0}, "adaptive-dask:dask.maxWorkers"),
    ({"maxWorkers": 15}, "adaptive-dask:dask.maxWorkers"),
    ({"maxWorkers": "ten"}, "adaptive-dask:dask.maxWorkers"),
    ({"interval": "soon"}, "adaptive-dask:dask.interval"),
    ({"scaleDownDelay": "-5"}, "adaptive-dask:dask.scaleDownDelay"),
    ({"targetDuration": 0}, "adaptive-dask:dask.targetDuration"),
    ({"terminationGracePeriodSeconds": 5}, "adaptive-dask:dask.terminationGracePeriodSeconds"),
    ({"scratchSize": "40Gi"}, "adaptive-dask:dask.scratchSize"),
    ({"scratchSize": "100Mi"}, "adaptive-dask:dask.scratchSize"),
    ({"schedulerMemory": "8Gi"}, "adaptive-dask:dask.schedulerMemory"),
    ({"schedulerCpu": "50m"}, "adaptive-dask:dask.schedulerCpu"),
    ({"namespace": "Dask_NS"}, "adaptive-dask:dask.namespace"),
    ({"maxworkers": 3}, "adaptive-dask:dask.maxworkers"),
    # 0 is not "unset": never silently replaced by the default (issue 10)
    ({"workerMemory": "0"}, "adaptive-dask:dask.workerMemory"),
    ({"workerMemory": 0}, "adaptive-dask:dask.workerMemory"),
    ({"workerCpu": "0"}, "adaptive-dask:dask.workerCpu"),
    ({"workerCpu": "0m"}, "adaptive-dask:dask.workerCpu"),
    ({"scratchSize": "0"}, "adaptive-dask:dask.scratchSize"),
    ({"scratchSize": "100Ki"}, "adaptive-dask:dask.scratchSize"),
    ({"schedulerCpu": 0}, "adaptive-dask:dask.schedulerCpu"),
    ({"workersPerNode": 0}, "adaptive-dask:dask.workersPerNode"),
    ({"workerThreads": 0}, "adaptive-dask:dask.workerThreads"),
    ({"workersPerNode": "0"}, "adaptive-dask:dask.workersPerNode"),
]


@pytest.mark.parametrize(
    ("obj", "key"), BAD_DASK, ids=[k.rsplit(".", 1)[-1] + str(i) for i, (_, k) in enumerate(BAD_DASK)]
)
def test_bad_dask_config_is_rejected_naming_the_key(obj, key):
    with pytest.raises(ConfigError) as err:
        dask(obj)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: got ")


@pytest.mark.parametrize("key", ["workerMemory", "workerCpu", "scratchSize"])
def test_zero_is_refused_with_a_hint_not_replaced_by_the_default(key):
    with pytest.raises(ConfigError) as err:
        dask({key: "0"})
    assert (
        err.value.key == f"adaptive-dask:dask.{key}" and "leave it unset for the default" in err.value.allowed
    )


def test_a_system_node_too_small_for_the_default_scheduler_names_the_instance_type():
    with pytest.raises(ConfigError) as err:
        dask(None, f=facts(system_instance_type="t3.small"))
    assert err.value.key == "adaptive-dask:systemNodeGroup.instanceType" and err.value.value == "t3.small"
    assert "default 1000m CPU / 2048Mi does not fit a t3.small" in err.value.allowed
    assert "dask.schedulerMemory" in err.value.allowed
    # A scheduler sized down explicitly fits it.
    assert dask({"schedulerCpu": "500m", "schedulerMemory": "1Gi"}, f=facts(system_instance_type="t3.small"))
    with pytest.raises(ConfigError) as err:
        dask({"schedulerMemory": "1536Mi"}, f=facts(system_instance_type="t3.small"))
    assert err.value.key == "adaptive-dask:dask.schedulerMemory"  # the key the user set


def test_a_system_type_outside_the_table_is_refused_with_how_to_proceed():
    with pytest.raises(ConfigError) as err:
        dask(None, f=facts(system_instance_type="m6in.large"))
    assert err.value.key == "adaptive-dask:systemNodeGroup.instanceType"
    assert "infra/facts/instance_types.py" in err.value.allowed and "t3.medium" in err.value.allowed


def test_scratch_that_cannot_fit_names_what_the_user_set_with_the_numbers():
    small = (builders.group("tiny", ("m6i.2xlarge",), max_size=2, disk_gib=20),)
    with pytest.raises(ConfigError) as err:
        dask({"workersPerNode": 16}, f=facts(groups=small))
    assert err.value.key == "adaptive-dask:dask.workersPerNode" and err.value.value == 16
    assert (
        "16384Mi" in err.value.allowed and "20 GiB disk of worker group 'tiny' (12288Mi)" in err.value.allowed
    )
    assert "adaptive-dask:workerGroups[0].diskGiB" in err.value.allowed
    tiny = (builders.group("tiny", ("m6i.2xlarge",), max_size=2, disk_gib=1),)
    with pytest.raises(ConfigError) as err:
        dask(None, f=facts(groups=tiny))
    assert err.value.key == "adaptive-dask:workerGroups[0].diskGiB" and err.value.value == 1


def test_autoscaler_takes_what_go_parses():
    assert autoscaler({"scaleDownDelayAfterAdd": "0"}).flags["scale-down-delay-after-add"] == "0"
    assert autoscaler({"scaleDownDelayAfterAdd": ".5m"}).flags["scale-down-delay-after-add"] == ".5m"


def test_not_an_object_is_rejected():
    with pytest.raises(ConfigError) as err:
        builders.dask("[1, 2]", cluster=facts())
    assert err.value.key == "adaptive-dask:dask"
    with pytest.raises(ConfigError) as err:
        builders.dask("{not json", cluster=facts())
    assert err.value.key == "adaptive-dask:dask"


def test_unknown_worker_instance_type_names_the_group_key():
    f = facts(groups=(builders.group("g", ("m6i.xlarge", "x9.huge"), "SPOT", 3),))
    with pytest.raises(ConfigError) as err:
        dask(None, f=f)
    assert err.value.key == "adaptive-dask:workerGroups[0].instanceTypes[1]"
    assert "m6i.xlarge" in err.value.allowed


def test_local_target_rejects_cluster_only_settings():
    with pytest.raises(ConfigError) as err:
        dask({"workersPerNode": 2}, target="local")
    assert err.value.key == "adaptive-dask:dask.workersPerNode"


BAD_AUTOSCALER = [
    ({"scaleDownUnneededTime": "10 minutes"}, "adaptive-dask:autoscaler.scaleDownUnneededTime"),
    ({"scaleDownUnneededTime": "10s"}, "adaptive-dask:autoscaler.scaleDownUnneededTime"),
    ({"maxNodeProvisionTime": "2h"}, "adaptive-dask:autoscaler.maxNodeProvisionTime"),
    ({"scaleDownDelayAfterAdd": 300}, "adaptive-dask:autoscaler.scaleDownDelayAfterAdd"),
    ({"expander": "cheapest"}, "adaptive-dask:autoscaler.expander"),
    ({"balanceSimilarNodeGroups": "maybe"}, "adaptive-dask:autoscaler.balanceSimilarNodeGroups"),
    ({"skipNodesWithLocalStorage": 1}, "adaptive-dask:autoscaler.skipNodesWithLocalStorage"),
    ({"scanInterval": "10s"}, "adaptive-dask:autoscaler.scanInterval"),
]


@pytest.mark.parametrize(("obj", "key"), BAD_AUTOSCALER)
def test_bad_autoscaler_config_is_rejected_naming_the_key(obj, key):
    with pytest.raises(ConfigError) as err:
        autoscaler(obj)
    assert err.value.key == key


@pytest.mark.parametrize("version", ["1.29", "1.37", "latest"])
def test_kubernetes_minor_without_a_matching_autoscaler_fails_at_config_time(version):
    with pytest.raises(ConfigError) as err:
        autoscaler(None, f=facts(kubernetes_version=version))
    assert err.value.key == "adaptive-dask:cluster.version"
    assert "1.35" in err.value.allowed


class FakeConfig:
    """Stands in for pulumi.Config: `get` returns the CLI's strings (JSON text for objects)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, key: str) -> str | None:
        return self.values.get(key)


def reader(values: dict[str, str]) -> ConfigReader:
    cfg = ConfigReader.__new__(ConfigReader)
    cfg.namespace, cfg._config = "adaptive-dask", FakeConfig(values)  # type: ignore[assignment]
    return cfg


def test_loader_reads_all_three_keys_for_local():
    cfg = reader({"dask": json.dumps({"maxWorkers": "3"}), "kubeContext": "kind-dask"})
    dask_settings, ca, context = kc.parse_kubernetes(
        cfg, target="local", aws=None, default_namespace="adask-local"
    )
    assert ca is None and context == "kind-dask" and dask_settings.max_workers == 3


@pytest.mark.parametrize(
    ("target", "values", "key"),
    [
        ("local", {"autoscaler": "{}"}, "adaptive-dask:autoscaler"),
        ("aws", {"kubeContext": "kind-dask"}, "adaptive-dask:kubeContext"),
        ("local", {"kubeContext": " "}, "adaptive-dask:kubeContext"),
    ],
)
def test_loader_rejects_keys_of_the_other_target(target, values, key):
    cluster = facts() if target == "aws" else None
    with pytest.raises(ConfigError) as err:
        kc.parse_kubernetes(reader(values), target=target, aws=cluster, default_namespace="x")
    assert err.value.key == key


# ---------------------------------------------------------------- properties and docs


@settings(max_examples=150, deadline=None)
@given(
    itypes=st.lists(st.sampled_from(sorted(it.INSTANCE_TYPES)), min_size=1, max_size=3, unique=True),
    per_node=st.integers(1, 8),
)
def test_any_accepted_sizing_fits_every_instance_type_of_the_groups(itypes, per_node):
    f = facts(groups=(builders.group("g", tuple(itypes), "SPOT", 5, 200),))
    try:
        s = dask({"workersPerNode": per_node}, f=f)
    except ConfigError as err:  # too many workers for the smallest node: refused, never over-packed
        assert err.key == "adaptive-dask:dask.workersPerNode"
        return
    for itype in itypes:
        cap = it.pod_capacity(itype)
        assert per_node * s.worker.cpu_millicores <= cap.cpu_millicores
        assert per_node * s.worker.memory_mib <= cap.memory_mib
    assert s.worker.dask_memory_limit_bytes < s.worker.memory_mib * 2**20
    assert abs(s.worker.threads - s.worker.cpu_millicores / 1000) < 1


def test_keys_doc_lists_every_key():
    doc = (REPO_ROOT / "docs" / "configuration-reference.md").read_text()
    documented = set(re.findall(r"^\| `([A-Za-z]+)`", doc, flags=re.M))
    documented |= set(re.findall(r"^\| `[A-Za-z]+` / `([A-Za-z]+)`", doc, flags=re.M))
    assert set(kc.DASK_DEFAULTS) | set(kc.AUTOSCALER_DEFAULTS) <= documented
    assert kc.DEFAULT_IMAGE in doc
