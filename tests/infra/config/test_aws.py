"""infra/config/ as the program loads it (load_settings), mostly the AWS layer's keys (infra/config/aws.py):
defaults, CLI-style parsing, and one ConfigError per bad input (key, value, allowed)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from infra.config.aws import (
    CLOUDWATCH_RETENTION_DAYS,
    DEFAULT_CLUSTER,
    DEFAULT_NETWORK,
    DEFAULT_SYSTEM,
)
from infra.config.load import load_settings
from infra.config.node_groups import DEFAULT_WORKER, is_arm_instance_type
from infra.config.settings import Settings
from infra.errors import ConfigError
from infra.facts.versions import SUPPORTED_KUBERNETES_VERSIONS
from testbed.infra.builders import PROD_CLUSTER, prod
from testbed.infra.harness import REPO_ROOT, install, run_program

NS = "adaptive-dask"
NET, CLUSTER, SYSTEM, WORKERS = (
    f"{NS}:{k}" for k in ("network", "cluster", "systemNodeGroup", "workerGroups")
)


def settings(config: dict[str, str] | None = None, stack: str = "test") -> Settings:
    install(stack=stack, config=config or {})
    return run_program(load_settings)


def bad(case: str, config: dict[str, str], key: str, value: object, allowed: str) -> object:
    return pytest.param(config, key, value, allowed, id=case)


def worker(**fields: object) -> str:
    return json.dumps([{"name": "w", **fields}])


# --------------------------------------------------------------------------------------------------
# Defaults and parsing
# --------------------------------------------------------------------------------------------------


def test_empty_config_gives_the_documented_defaults() -> None:
    s = settings()
    assert s.target == "aws" and s.production is False
    assert s.name == "adask-test"
    assert s.aws is not None
    assert s.aws.region == "us-east-1"
    net, cluster = s.aws.network, s.aws.cluster
    assert (net.cidr, net.az_count, net.nat_mode, net.flow_logs) == (
        DEFAULT_NETWORK["cidr"],
        DEFAULT_NETWORK["azCount"],
        DEFAULT_NETWORK["natMode"],
        DEFAULT_NETWORK["flowLogs"],
    )
    assert cluster.version == DEFAULT_CLUSTER["version"] in SUPPORTED_KUBERNETES_VERSIONS
    assert list(cluster.log_types) == DEFAULT_CLUSTER["logTypes"]
    assert cluster.endpoint_private_access is True
    assert s.aws.system.instance_type == DEFAULT_SYSTEM["instanceType"]
    assert len(s.aws.workers) == 1
    assert s.aws.workers[0].min_size == DEFAULT_WORKER["minSize"]
    assert s.aws.workers[0].capacity_type == "ON_DEMAND"


def test_values_arrive_as_cli_strings_including_nested_scalars() -> None:
    s = settings(
        {
            **prod(
                {
                    "azCount": "3",
                    "natMode": "per-az",
                    "flowLogs": "true",
                    "zoneIds": ["a1-az1", "a1-az2", "a1-az3"],
                },
                {"publicAccessCidrs": ["198.51.100.0/24"], "logRetentionDays": "90"},
            ),
            f"{NS}:workerGroups": worker(minSize="0", maxSize="7", diskGiB="64", capacityType="SPOT"),
        }
    )
    assert s.production is True
    assert s.aws is not None
    assert (s.aws.network.az_count, s.aws.network.flow_logs) == (3, True)
    assert s.aws.cluster.log_retention_days == 90
    w = s.aws.workers[0]
    assert (w.min_size, w.max_size, w.disk_gib, w.capacity_type) == (0, 7, 64, "SPOT")


def test_public_endpoint_without_cidrs_outside_production_means_anywhere() -> None:
    s = settings({f"{NS}:cluster": json.dumps({"publicAccessCidrs": []})})
    assert s.aws is not None
    assert s.aws.cluster.public_access_cidrs == ("0.0.0.0/0",)


def test_private_only_endpoint_in_production_needs_no_cidrs() -> None:
    s = settings(prod(cluster={"endpointPublicAccess": False, "publicAccessCidrs": []}))
    assert s.aws is not None
    assert s.aws.cluster.endpoint_public_access is False
    assert s.aws.cluster.public_access_cidrs == ()


def test_target_local_needs_and_reads_no_aws_config() -> None:
    # Garbage in every AWS key: with target=local none of it is read.
    s = settings(
        {
            f"{NS}:target": "local",
            f"{NS}:network": json.dumps({"azCount": 9}),
            f"{NS}:workerGroups": "not json",
            "aws:region": "moon-1",
        }
    )
    assert s.target == "local"
    assert s.aws is None


def test_common_tags_merge_user_tags_with_builtins() -> None:
    s = settings({f"{NS}:tags": json.dumps({"Team": "data"})}, stack="staging")
    assert dict(s.tags) == {"Project": NS, "Stack": "staging", "ManagedBy": "pulumi", "Team": "data"}


def test_settings_are_frozen() -> None:
    s = settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.production = True  # type: ignore[misc]
    assert s.aws is not None
    with pytest.raises(TypeError):
        s.aws.workers[0].labels["x"] = "y"  # type: ignore[index]


def test_taints_and_labels_are_parsed() -> None:
    s = settings(
        {
            f"{NS}:workerGroups": worker(
                labels={"example.com/team": "data", "tier": ""},
                taints=[
                    {"key": "dedicated", "value": "dask", "effect": "NoExecute"},
                    {"key": "gpu", "effect": "NoSchedule"},
                ],
            )
        }
    )
    assert s.aws is not None
    w = s.aws.workers[0]
    assert dict(w.labels) == {"example.com/team": "data", "tier": ""}
    assert [(t.key, t.value, t.effect) for t in w.taints] == [
        ("dedicated", "dask", "NoExecute"),
        ("gpu", "", "NoSchedule"),
    ]


def test_stack_names_become_valid_cluster_names() -> None:
    s = settings({f"{NS}:namePrefix": "dask"}, stack="Feature.Branch_1")
    assert s.name == "dask-feature-branch-1"


@pytest.mark.parametrize(
    ("instance_type", "arm"),
    [("m7g.large", True), ("c6gn.xlarge", True), ("t4g.small", True), ("a1.large", True),
     ("g5g.xlarge", True), ("m6i.large", False), ("g5.xlarge", False), ("m7i-flex.large", False),
     ("inf2.xlarge", False)],
)  # fmt: skip
def test_arm_detection(instance_type: str, arm: bool) -> None:
    assert is_arm_instance_type(instance_type) is arm


# --------------------------------------------------------------------------------------------------
# Bad inputs: each must name the full key, echo the bad value and say what is allowed
# --------------------------------------------------------------------------------------------------

BAD = [
    # bad(id, config, expected full key, expected bad value, words from the "allowed" text)
    bad("max-below-min", {WORKERS: worker(minSize=3, maxSize=2)}, "workerGroups[0].maxSize", 2, ">= minSize"),
    bad("negative-min", {WORKERS: worker(minSize=-1)}, "workerGroups[0].minSize", -1, "between 0"),
    bad("max-zero", {WORKERS: worker(minSize=0, maxSize=0)}, "workerGroups[0].maxSize", 0, "between 1"),
    bad("max-above-quota", {WORKERS: worker(maxSize=451)}, "workerGroups[0].maxSize", 451, "450"),
    bad(
        "capacity-type",
        {WORKERS: worker(capacityType="PREEMPTIBLE")},
        "workerGroups[0].capacityType",
        "PREEMPTIBLE",
        "ON_DEMAND, SPOT",
    ),
    bad("cidr-invalid", {NET: json.dumps({"cidr": "10.0.0.0/33"})}, "network.cidr", "10.0.0.0/33", "CIDR"),
    bad(
        "cidr-host-bits",
        {NET: json.dumps({"cidr": "10.0.0.1/16"})},
        "network.cidr",
        "10.0.0.1/16",
        "no host bits",
    ),
    bad(
        "cidr-overlaps-services",
        {NET: json.dumps({"cidr": "172.20.0.0/16"})},
        "cluster.serviceCidr",
        "172.20.0.0/16",
        "overlap",
    ),
    bad(
        "cidr-too-small",
        {NET: json.dumps({"cidr": "10.0.0.0/24"})},
        "network.cidr",
        "10.0.0.0/24",
        "too small",
    ),
    bad("cidr-too-big", {NET: json.dumps({"cidr": "10.0.0.0/8"})}, "network.cidr", "10.0.0.0/8", "/16"),
    bad("cidr-public", {NET: json.dumps({"cidr": "8.8.0.0/16"})}, "network.cidr", "8.8.0.0/16", "10.0.0.0/8"),
    bad("az-count-1", {NET: json.dumps({"azCount": 1})}, "network.azCount", 1, "between 2 and 3"),
    bad("az-count-4", {NET: json.dumps({"azCount": "4"})}, "network.azCount", "4", "between 2 and 3"),
    bad("nat-mode", {NET: json.dumps({"natMode": "none"})}, "network.natMode", "none", "single, per-az"),
    bad(
        "flow-logs-not-bool",
        {NET: json.dumps({"flowLogs": "maybe"})},
        "network.flowLogs",
        "maybe",
        "true or false",
    ),
    bad(
        "unknown-network-field",
        {NET: json.dumps({"cidrBlock": "10.0.0.0/16"})},
        "network.cidrBlock",
        "10.0.0.0/16",
        "unknown field",
    ),
    bad(
        "network-not-json",
        {f"{NS}:network": "{cidr: 10.0.0.0/16"},
        "network",
        "{cidr: 10.0.0.0/16",
        "valid JSON",
    ),
    bad("k8s-version", {CLUSTER: json.dumps({"version": "1.29"})}, "cluster.version", "1.29", "1.35"),
    bad("k8s-version-number", {CLUSTER: json.dumps({"version": 1.35})}, "cluster.version", 1.35, "quoted"),
    bad(
        "instance-types-empty",
        {WORKERS: worker(instanceTypes=[])},
        "workerGroups[0].instanceTypes",
        [],
        "at least one",
    ),
    bad(
        "instance-type-malformed",
        {WORKERS: worker(instanceTypes=["m6i-xlarge"])},
        "workerGroups[0].instanceTypes[0]",
        "m6i-xlarge",
        "instance type",
    ),
    bad(
        "instance-types-arm64-worker",
        {WORKERS: worker(instanceTypes=["m6i.large", "m7g.large"])},
        "workerGroups[0].instanceTypes[1]",
        "m7g.large",
        "arm64 (Graviton) instance types are not supported yet",
    ),
    bad(
        "instance-types-arm64-system",
        {SYSTEM: json.dumps({"instanceType": "t4g.medium"})},
        "systemNodeGroup.instanceType",
        "t4g.medium",
        "arm64 (Graviton) instance types are not supported yet",
    ),
    bad(
        "system-instance-type",
        {SYSTEM: json.dumps({"instanceType": "large"})},
        "systemNodeGroup.instanceType",
        "large",
        "instance type",
    ),
    bad("system-size-zero", {SYSTEM: json.dumps({"size": 0})}, "systemNodeGroup.size", 0, "between 1"),
    bad(
        "taint-effect",
        {WORKERS: worker(taints=[{"key": "k", "value": "v", "effect": "NoRun"}])},
        "workerGroups[0].taints[0].effect",
        "NoRun",
        "NoSchedule, PreferNoSchedule, NoExecute",
    ),
    bad(
        "taint-duplicate",
        {WORKERS: worker(taints=[{"key": "k", "effect": "NoSchedule"}] * 2)},
        "workerGroups[0].taints[1]",
        {"key": "k", "effect": "NoSchedule"},
        "duplicate",
    ),
    bad(
        "taint-reserved-key",
        {WORKERS: worker(taints=[{"key": "adaptive-dask/dask-worker", "effect": "NoSchedule"}])},
        "workerGroups[0].taints[0].key",
        "adaptive-dask/dask-worker",
        "reserved",
    ),
    bad(
        "duplicate-group-names",
        {WORKERS: json.dumps([{"name": "w"}, {"name": "w"}])},
        "workerGroups[1].name",
        "w",
        "duplicate",
    ),
    bad(
        "group-named-system",
        {WORKERS: json.dumps([{"name": "system"}])},
        "workerGroups[0].name",
        "system",
        "reserved",
    ),
    bad(
        "group-name-invalid",
        {WORKERS: json.dumps([{"name": "Spot_Pool"}])},
        "workerGroups[0].name",
        "Spot_Pool",
        "[a-z]",
    ),
    bad("no-worker-groups", {WORKERS: "[]"}, "workerGroups", [], "at least one"),
    bad(
        "label-key-invalid",
        {WORKERS: worker(labels={"bad key!": "x"})},
        "workerGroups[0].labels.bad key!",
        "bad key!",
        "label key",
    ),
    bad(
        "label-key-reserved",
        {WORKERS: worker(labels={"node.kubernetes.io/role": "x"})},
        "workerGroups[0].labels.node.kubernetes.io/role",
        "node.kubernetes.io/role",
        "reserved",
    ),
    bad(
        "label-value-too-long",
        {WORKERS: worker(labels={"team": "x" * 64})},
        "workerGroups[0].labels.team",
        "x" * 64,
        "63",
    ),
    bad(
        "retention-not-cloudwatch",
        {CLUSTER: json.dumps({"logRetentionDays": 31})},
        "cluster.logRetentionDays",
        31,
        "CloudWatch",
    ),
    bad(
        "retention-never",
        {NET: json.dumps({"flowLogRetentionDays": 0})},
        "network.flowLogRetentionDays",
        0,
        "CloudWatch",
    ),
    bad(
        "log-type",
        {CLUSTER: json.dumps({"logTypes": ["api", "kubelet"]})},
        "cluster.logTypes[1]",
        "kubelet",
        "controllerManager",
    ),
    bad(
        "prod-public-no-cidrs",
        prod(cluster={"publicAccessCidrs": []}),
        "cluster.publicAccessCidrs",
        [],
        "production",
    ),
    bad(
        "prod-public-anywhere",
        prod(cluster={"publicAccessCidrs": ["0.0.0.0/0"]}),
        "cluster.publicAccessCidrs",
        ["0.0.0.0/0"],
        "0.0.0.0/0",
    ),
    bad(
        "public-cidr-invalid",
        {CLUSTER: json.dumps({"publicAccessCidrs": ["1.2.3.4/40"]})},
        "cluster.publicAccessCidrs[0]",
        "1.2.3.4/40",
        "CIDR",
    ),
    bad(
        "cidrs-without-public-endpoint",
        {CLUSTER: json.dumps({"endpointPublicAccess": False, "publicAccessCidrs": ["198.51.100.0/24"]})},
        "cluster.publicAccessCidrs",
        ["198.51.100.0/24"],
        "must be empty",
    ),
    bad(
        "no-endpoint-at-all",
        {CLUSTER: json.dumps({"endpointPublicAccess": False, "endpointPrivateAccess": False})},
        "cluster.endpointPrivateAccess",
        False,
        "no endpoint",
    ),
    bad(
        "admin-arn-is-session",
        {CLUSTER: json.dumps({"adminArns": ["arn:aws:sts::123456789012:assumed-role/r/s"]})},
        "cluster.adminArns[0]",
        "arn:aws:sts::123456789012:assumed-role/r/s",
        "role ARN",
    ),
    bad(
        "service-cidr-public",
        {CLUSTER: json.dumps({"serviceCidr": "8.8.0.0/16"})},
        "cluster.serviceCidr",
        "8.8.0.0/16",
        "172.16.0.0/12",
    ),
    bad(
        "addon-version",
        {CLUSTER: json.dumps({"addonVersions": {"coredns": "1.11.1"}})},
        "cluster.addonVersions.coredns",
        "1.11.1",
        "eksbuild",
    ),
    # issue 20 A1/A4: production pins its versions and zones; "latest" only where said and allowed
    bad(
        "prod-addon-latest",
        prod(cluster={"addonVersions": {**PROD_CLUSTER["addonVersions"], "coredns": "latest"}}),  # type: ignore[dict-item]
        "cluster.addonVersions.coredns",
        "latest",
        "production",
    ),
    bad(
        "prod-addon-missing",
        prod(cluster={"addonVersions": {"vpc-cni": "v1.20.4-eksbuild.1"}}),
        "cluster.addonVersions",
        {"vpc-cni": "v1.20.4-eksbuild.1"},
        "missing: kube-proxy, coredns",
    ),
    bad(
        "prod-ami-latest",
        prod(cluster={"nodeAmiReleaseVersion": "latest"}),
        "cluster.nodeAmiReleaseVersion",
        "latest",
        "rolls every node group",
    ),
    bad(
        "prod-ami-unset",
        {
            **prod(),
            CLUSTER: json.dumps({k: v for k, v in PROD_CLUSTER.items() if k != "nodeAmiReleaseVersion"}),
        },
        "cluster.nodeAmiReleaseVersion",
        None,
        "production",
    ),
    bad("prod-zones-unset", prod(network={"zoneIds": []}), "network.zoneIds", [], "pin the zones by ID"),
    bad(
        "zone-count", {NET: json.dumps({"zoneIds": ["use1-az1"]})}, "network.zoneIds", ["use1-az1"], "exactly"
    ),
    bad(
        "zone-id",
        {NET: json.dumps({"zoneIds": ["us-east-1a", "use1-az2"]})},
        "network.zoneIds[0]",
        "us-east-1a",
        "zone ID",
    ),
    bad(
        "addon-unknown",
        {CLUSTER: json.dumps({"addonVersions": {"aws-efs-csi-driver": "v1.0.0-eksbuild.1"}})},
        "cluster.addonVersions.aws-efs-csi-driver",
        "aws-efs-csi-driver",
        "coredns",
    ),
    bad(
        "disk-not-numeric",
        {WORKERS: worker(diskGiB="20GB")},
        "workerGroups[0].diskGiB",
        "20GB",
        "whole number",
    ),
    bad("disk-too-small", {SYSTEM: json.dumps({"diskGiB": 8})}, "systemNodeGroup.diskGiB", 8, "between 20"),
    bad("size-bool", {WORKERS: worker(maxSize=True)}, "workerGroups[0].maxSize", True, "whole number"),
    bad("target", {f"{NS}:target": "gcp"}, "target", "gcp", "aws, local"),
    bad("production-not-bool", {f"{NS}:production": "yes"}, "production", "yes", "true or false"),
    bad("name-prefix", {f"{NS}:namePrefix": "Bad_Prefix"}, "namePrefix", "Bad_Prefix", "[a-z]"),
    bad("tag-aws-prefix", {f"{NS}:tags": json.dumps({"aws:cost": "x"})}, "tags.aws:cost", "aws:cost", "aws:"),
    bad("tag-builtin", {f"{NS}:tags": json.dumps({"Stack": "other"})}, "tags.Stack", "Stack", "reserved"),
    bad("tag-not-string", {f"{NS}:tags": json.dumps({"Team": 3})}, "tags.Team", 3, "string"),
    bad("region", {"aws:region": "moon-1"}, "aws:region", "moon-1", "us-east-1"),
    # issue 20 A6: traps that passed validation and failed in AWS (or deployed somewhere unintended)
    bad("aws-key-typo", {"aws:regoin": "eu-west-1"}, "aws:regoin", "eu-west-1", "did you mean aws:region?"),
    bad("aws-key-unread", {"aws:profile": "admin"}, "aws:profile", "admin", "it reads aws:region there"),
    bad(
        "kubernetes-context",
        {"kubernetes:context": "kind-dask"},
        "kubernetes:context",
        "kind-dask",
        "did you mean adaptive-dask:kubeContext?",
    ),
    bad(
        "namespace-kube-system",
        {f"{NS}:dask": json.dumps({"namespace": "kube-system"})},
        "dask.namespace",
        "kube-system",
        "belong to the cluster",
    ),
    bad(
        "namespace-default",
        {f"{NS}:dask": json.dumps({"namespace": "default"})},
        "dask.namespace",
        "default",
        "default",
    ),
    bad(
        "namespace-kube-prefix",
        {f"{NS}:dask": json.dumps({"namespace": "kube-dask"})},
        "dask.namespace",
        "kube-dask",
        "'kube-'",
    ),
    bad(
        "preview-arn-also-admin",
        {
            f"{NS}:cluster": json.dumps(
                {
                    "adminArns": ["arn:aws:iam::123456789012:role/x"],
                    "previewArns": ["arn:aws:iam::123456789012:role/path/x"],
                }
            )
        },
        "cluster.previewArns[0]",
        "arn:aws:iam::123456789012:role/path/x",
        "must not also be in adminArns",
    ),
    bad(
        "preview-arn-session",
        {f"{NS}:cluster": json.dumps({"previewArns": ["arn:aws:sts::123456789012:assumed-role/p/s"]})},
        "cluster.previewArns[0]",
        "arn:aws:sts::123456789012:assumed-role/p/s",
        "IAM role or user ARN",
    ),
    bad(
        "taints-51",
        {WORKERS: worker(taints=[{"key": f"k{i}", "effect": "NoSchedule"} for i in range(50)])},
        "workerGroups[0].taints",
        [{"key": f"k{i}", "effect": "NoSchedule"} for i in range(50)],
        "at most 49 taints",
    ),
    bad(
        "asg-tags-over-50",
        {WORKERS: worker(labels={f"l{i}": "x" for i in range(42)})},
        "workerGroups[0].labels",
        {f"l{i}": "x" for i in range(42)},
        "at most 50 fit",
    ),
]


@pytest.mark.parametrize(("config", "key", "value", "allowed"), BAD)
def test_bad_input_raises_config_error_naming_key_value_and_allowed(
    config: dict[str, str], key: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(config)
    err = caught.value
    full_key = key if key.startswith(("aws:", "kubernetes:")) else f"{NS}:{key}"
    assert err.key == full_key
    assert err.value == value
    assert allowed in err.allowed
    assert str(err).startswith(f"{full_key}: got {value!r};")


def test_there_are_at_least_25_distinct_bad_inputs() -> None:
    assert len({b.id for b in BAD}) == len(BAD) >= 25  # type: ignore[attr-defined]
    assert len({json.dumps(b.values[0], sort_keys=True) for b in BAD}) == len(BAD)  # type: ignore[attr-defined]


def test_every_retention_cloudwatch_accepts_is_accepted() -> None:
    for days in CLOUDWATCH_RETENTION_DAYS:
        s = settings({f"{NS}:cluster": json.dumps({"logRetentionDays": days})})
        assert s.aws is not None and s.aws.cluster.log_retention_days == days


def test_config_keys_doc_lists_every_field() -> None:
    """The configuration reference (generated, docs/) must not drift from the defaults in code."""
    doc = (REPO_ROOT / "docs" / "configuration-reference.md").read_text()
    sections = {
        "network": DEFAULT_NETWORK,
        "cluster": DEFAULT_CLUSTER,
        "systemNodeGroup": DEFAULT_SYSTEM,
        "workerGroups": {"name": None, **DEFAULT_WORKER},
    }
    for section, defaults in sections.items():
        body = doc.split(f"### `adaptive-dask:{section}`")[1].split("###")[0]
        documented = {
            line.split("|")[1].strip().strip("`") for line in body.splitlines() if line.startswith("| `")
        }
        assert documented == set(defaults), section
    for key in ("target", "production", "namePrefix", "tags"):
        assert f"`adaptive-dask:{key}`" in doc


@settings_(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(min_size=st.integers(-3, 460), max_size=st.integers(-3, 460))
def test_worker_group_bounds_are_accepted_exactly_when_valid(min_size: int, max_size: int) -> None:
    valid = 0 <= min_size <= max_size and 1 <= max_size <= 450
    try:
        s = settings({WORKERS: worker(minSize=str(min_size), maxSize=max_size)})
    except ConfigError as err:
        assert not valid
        assert err.key in (f"{WORKERS}[0].minSize", f"{WORKERS}[0].maxSize")
    else:
        assert valid
        assert s.aws is not None
        assert (s.aws.workers[0].min_size, s.aws.workers[0].max_size) == (min_size, max_size)


# --------------------------------------------------------------------------------------------------
# Issue 10: unknown top-level keys, ASG tag key limit
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "nearest"),
    [("workergroups", "workerGroups"), ("Production", "production"), ("systemNodegroup", "systemNodeGroup")],
)
def test_unknown_top_level_keys_are_refused_naming_the_nearest(key: str, nearest: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings({f"{NS}:{key}": "true"})
    assert caught.value.key == f"{NS}:{key}"
    assert f"did you mean {NS}:{nearest}?" in caught.value.allowed


def test_an_unknown_secret_key_does_not_print_its_value() -> None:
    install(stack="test", config={f"{NS}:passwrod": "hunter2"}, secret_keys=[f"{NS}:passwrod"])
    with pytest.raises(ConfigError) as caught:
        run_program(load_settings)
    assert "hunter2" not in str(caught.value) and caught.value.value == "[secret]"


def test_other_namespaces_and_every_known_key_are_accepted() -> None:
    s = settings(
        {"aws:region": "eu-west-1", "pulumi:disable-default-providers": '["aws"]', f"{NS}:dask": "{}"}
    )
    assert s.aws is not None and s.aws.region == "eu-west-1"


@pytest.mark.parametrize("where", ["labels", "taints"])
def test_label_and_taint_keys_must_fit_an_asg_tag_key(where: str) -> None:
    longest = "ppppppp.example.com/" + "k" * 62  # a name part holds at most 63 characters
    too_long = "p" + longest
    assert (len(longest), len(too_long)) == (82, 83)

    def group(key: str) -> str:
        field = {key: "v"} if where == "labels" else [{"key": key, "value": "v", "effect": "NoSchedule"}]
        return worker(**{where: field})

    assert settings({WORKERS: group(longest)}).aws is not None
    with pytest.raises(ConfigError) as caught:
        settings({WORKERS: group(too_long)})
    assert "at most 82" in caught.value.allowed and "128" in caught.value.allowed
    assert caught.value.key.startswith(f"{WORKERS}[0].{where}")


def test_a_node_group_name_over_63_characters_is_refused_before_anything() -> None:
    """`<namePrefix>-<stack>` (up to 40) + `-<group>` (up to 20) + Pulumi's `-xxxxxxx` reached 69."""
    config = {f"{NS}:namePrefix": "a" * 20, WORKERS: json.dumps([{"name": "g" * 20}])}
    with pytest.raises(ConfigError) as caught:
        settings(config, stack="s" * 19)
    assert caught.value.key == f"{NS}:workerGroups[0].name" and "69 characters" in caught.value.allowed
    assert "at most 14 characters here" in caught.value.allowed
    ok = settings({**config, WORKERS: json.dumps([{"name": "g" * 14}])}, stack="s" * 19)
    assert ok.aws is not None and len(ok.name) + 1 + 14 + 8 == 63


def test_the_asg_tag_count_the_config_checks_is_the_one_the_aws_layer_builds() -> None:
    from infra.aws.tags import scale_from_zero_tags
    from infra.config.node_groups import node_template_tag_count

    s = settings(
        {
            WORKERS: worker(
                labels={"a": "1", "b": "2"}, taints=[{"key": "t", "value": "v", "effect": "NoSchedule"}]
            )
        }
    )
    assert s.aws is not None
    (group,) = s.aws.workers
    assert node_template_tag_count(group) == len(scale_from_zero_tags(group))
