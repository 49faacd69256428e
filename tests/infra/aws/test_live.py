"""What a real `pulumi up` would trip over (issue 10): facts read from the live account before anything is
registered - zones EKS refuses, a log group EKS left behind, node-group bounds against the live desired
size, the deployer's access entry - plus DNS ordering, AMI tracking and vpc-cni's own IRSA role."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from infra.aws import iam
from infra.aws.live import (
    EKS_UNSUPPORTED_ZONE_IDS,
    LiveNodeGroup,
    choose_zones,
    delete_log_group_command,
    deployer_entry_needed,
    deployer_without_access,
    match_node_groups,
    placeholder_admin_error,
    worker_scaling,
)
from infra.aws.nodegroups import DESIRED_FROM_LIVE_TAG, ami_release_parameter
from infra.config.settings import WorkerGroupConfig
from infra.errors import ConfigError, LiveStateError
from testbed.infra.harness import (
    ACCOUNT_ID,
    CALLER_ROLE_ARN,
    REPO_ROOT,
    Graph,
    RecordingMocks,
    registered_before_failure,
    run_stack,
    stack_value,
)

GraphOf = Callable[..., Graph]
NG = "aws:eks/nodeGroup:NodeGroup"
SUBNET = "aws:ec2/subnet:Subnet"
ENTRY = "aws:eks/accessEntry:AccessEntry"
ADDON = "aws:eks/addon:Addon"


# ------------------------------------------------------------------------------------ 1. zones


def test_zones_eks_refuses_are_excluded_by_id_and_the_next_zone_is_used() -> None:
    # In this account us-east-1c is use1-az3, where EKS cannot place a control plane.
    mocks = RecordingMocks(region="us-east-1", zones=4)
    assert mocks.zone_ids[2] == "use1-az3"
    g = run_stack("dev", overrides={"adaptive-dask:network": json.dumps({"azCount": 3})}, mocks=mocks)
    (call,) = g.calls_to("aws:index/getAvailabilityZones:getAvailabilityZones")
    assert set(call.args["excludeZoneIds"]) == set(EKS_UNSUPPORTED_ZONE_IDS)
    zones = sorted({s.inputs["availabilityZone"] for s in g.of_type(SUBNET)})
    assert zones == ["us-east-1a", "us-east-1b", "us-east-1d"]


def test_too_many_zones_for_the_region_stop_before_any_aws_resource() -> None:
    # Three zone names, but one is the refused zone ID: azCount 3 cannot be met.
    error, registered = registered_before_failure(
        "dev", RecordingMocks(region="us-east-1", zones=3), {"adaptive-dask:network": '{"azCount": 3}'}
    )
    assert isinstance(error, ConfigError) and error.key == "adaptive-dask:network.azCount"
    assert "us-east-1 offers only 2 availability zones EKS accepts" in error.allowed
    assert "us-east-1a, us-east-1b" in error.allowed
    assert registered == ["pulumi:providers:aws"]  # a provider creates nothing in AWS


def test_choose_zones_pure() -> None:
    assert choose_zones(["a", "b", "c"], ["r-az1", "r-az2", "r-az4"], 2, "r") == ("a", "b")
    with pytest.raises(ConfigError, match="r offers only 1 availability zones"):
        choose_zones(["a"], ["r-az1"], 2, "r")


def test_pinned_zone_ids_choose_their_names_in_order_whatever_else_the_region_offers() -> None:
    names, ids = ["r1a", "r1b", "r1c", "r1d"], ["r1-az4", "r1-az1", "r1-az2", "r1-az6"]
    assert choose_zones(names, ids, 2, "r", ("r1-az2", "r1-az4")) == ("r1c", "r1a")
    # a zone that stops being usable (or joins the exclude list) stops the run naming the pin
    with pytest.raises(ConfigError) as caught:
        choose_zones(names[1:], ids[1:], 2, "r", ("r1-az2", "r1-az4"))
    assert caught.value.key == "adaptive-dask:network.zoneIds[1]"
    assert "r1-az1, r1-az2, r1-az6" in str(caught.value)


def test_pinned_zones_keep_the_subnets_when_the_usable_set_changes() -> None:
    """The trap: computed zones move when a zone's state changes and existing subnets would be asked to
    move (CIDR conflicts). With `network.zoneIds` the subnets stay where they are."""

    def subnet_zones(mocks: RecordingMocks) -> list[str]:
        return sorted(n.inputs["availabilityZone"] for n in run_stack("prod", mocks=mocks).of_type(SUBNET))

    before = RecordingMocks(region="eu-west-1")
    after = RecordingMocks(region="eu-west-1")
    # the account now lists the zones in another order and a new zone first
    after.zone_names, after.zone_ids = after.zone_names[::-1], after.zone_ids[::-1]
    assert subnet_zones(before) == subnet_zones(after)


# ------------------------------------------------------------------------------------ 2. re-creating a stack


def test_a_log_group_left_behind_by_eks_stops_the_run_with_the_command_that_clears_it() -> None:
    name = "/aws/eks/adask-dev/cluster"
    error, registered = registered_before_failure("dev", RecordingMocks(log_groups={name: {}}))
    assert isinstance(error, LiveStateError)
    assert f"aws logs delete-log-group --region us-east-1 --log-group-name {name}" in str(error)
    assert registered == ["pulumi:providers:aws"]


def test_the_stacks_own_log_group_is_no_obstacle() -> None:
    name = "/aws/eks/adask-dev/cluster"
    mine = {"Project": "adaptive-dask", "Stack": "dev", "ManagedBy": "pulumi"}
    g = run_stack("dev", mocks=RecordingMocks(log_groups={name: mine}))
    assert g.one("aws:eks/cluster:Cluster")
    other_stack = {**mine, "Stack": "prod"}
    error, _ = registered_before_failure("dev", RecordingMocks(log_groups={name: other_stack}))
    assert isinstance(error, LiveStateError)


def test_no_log_group_lookup_when_control_plane_logging_is_off(stack_graph: GraphOf) -> None:
    g = stack_graph("dev", overrides={"adaptive-dask:cluster": json.dumps({"logTypes": []})})
    assert not g.calls_to("aws:cloudwatch/getLogGroups:getLogGroups")
    assert stack_graph("dev").calls_to("aws:cloudwatch/getLogGroups:getLogGroups")


def test_destroy_section_gives_the_exact_step_before_re_creating() -> None:
    readme = (REPO_ROOT / "docs" / "operations.md").read_text()
    destroy = readme.split("## Destroying a stack")[1].split("\n## ")[0]
    command = delete_log_group_command("/aws/eks/<namePrefix>-<stack>/cluster", "<region>")
    assert command in destroy


# ------------------------------------------------------------------------------------ 3. bounds vs live size


def group(min_size: int, max_size: int) -> WorkerGroupConfig:
    return WorkerGroupConfig("spot", ("m6i.large",), "SPOT", min_size, max_size, 50, {}, ())


@pytest.mark.parametrize(
    ("live", "bounds", "desired", "ignored"),
    [
        (None, (0, 5), 0, True),  # first creation starts at the floor
        ((0, 5, 3), (0, 5), 3, True),  # bounds unchanged: cluster-autoscaler keeps owning it
        ((0, 5, 1), (3, 5), 3, False),  # minSize raised above the live size: sent, clamped up
        ((0, 10, 8), (0, 5), 5, False),  # maxSize lowered below it: clamped down
        ((0, 5, 4), (1, 8), 4, False),  # bounds changed, live size inside: the live size, not a stale one
    ],
)
def test_worker_scaling_table(live, bounds, desired, ignored) -> None:
    current = LiveNodeGroup("ng", *live) if live else None
    scaling = worker_scaling(group(*bounds), current)
    assert (scaling.min_size, scaling.max_size) == bounds
    assert (scaling.desired_size, scaling.ignore_desired) == (desired, ignored)


def test_live_node_groups_are_matched_by_their_auto_name() -> None:
    live = [
        "adask-dev-spot-a1b2c3d",
        "adask-dev-spot-x-0000000",
        "adask-dev-system-1234567",
        "other-spot-1234567",
    ]
    assert match_node_groups("adask-dev", ["spot", "spot-x", "gpu"], live) == {
        "spot": "adask-dev-spot-a1b2c3d",
        "spot-x": "adask-dev-spot-x-0000000",
    }


def test_raising_min_size_sends_the_live_size_clamped_and_marks_the_group() -> None:
    workers = stack_value("dev", "adaptive-dask:workerGroups")
    raised = [{**workers[0], "minSize": 2}]
    mocks = RecordingMocks(live_node_groups={"adask-dev-spot-a1b2c3d": (0, 5, 1)})
    g = run_stack("dev", overrides={"adaptive-dask:workerGroups": json.dumps(raised)}, mocks=mocks)
    (spot,) = [n for n in g.of_type(NG) if n.inputs["labels"]["adaptive-dask/pool"] == "spot"]
    assert spot.inputs["scalingConfig"] == {"minSize": 2, "maxSize": 5, "desiredSize": 2}
    assert spot.ignore_changes == []
    assert spot.inputs["tags"][DESIRED_FROM_LIVE_TAG] == "1"
    (call,) = g.calls_to("aws:eks/getNodeGroup:getNodeGroup")
    assert call.args == {"clusterName": "adask-dev", "nodeGroupName": "adask-dev-spot-a1b2c3d"}


def test_unchanged_bounds_leave_the_live_size_alone() -> None:
    mocks = RecordingMocks(live_node_groups={"adask-dev-spot-a1b2c3d": (0, 5, 4)})
    g = run_stack("dev", mocks=mocks)
    (spot,) = [n for n in g.of_type(NG) if n.inputs["labels"]["adaptive-dask/pool"] == "spot"]
    assert spot.ignore_changes == ["scalingConfig.desiredSize"]
    assert DESIRED_FROM_LIVE_TAG not in spot.inputs["tags"]


def test_before_the_first_up_no_node_group_is_read(stack_graph: GraphOf) -> None:
    g = stack_graph("dev")
    assert g.calls_to("aws:eks/getClusters:getClusters")
    assert not g.calls_to("aws:eks/getNodeGroups:getNodeGroups")


# ------------------------------------------------------------------------------------ 4. the deployer's entry


def test_deployer_listed_in_admin_arns_gets_one_entry_path_or_not() -> None:
    without_path = f"arn:aws:iam::{ACCOUNT_ID}:role/deployer"
    assert CALLER_ROLE_ARN.endswith("/automation/deployer")
    for listed in (CALLER_ROLE_ARN, without_path):
        cluster = {"deployerAdmin": True, "adminArns": [listed]}
        g = run_stack("dev", overrides={"adaptive-dask:cluster": json.dumps(cluster)})
        assert [e.inputs["principalArn"] for e in g.of_type(ENTRY)] == [listed]


def test_deployer_entry_decisions_pure() -> None:
    me = f"arn:aws:iam::{ACCOUNT_ID}:role/team/ci"
    other = f"arn:aws:iam::{ACCOUNT_ID}:role/ops"
    assert deployer_entry_needed(me, True, [other])
    assert not deployer_entry_needed(me, True, [f"arn:aws:iam::{ACCOUNT_ID}:role/ci"])
    assert not deployer_entry_needed(me, False, [other])
    assert deployer_without_access(me, False, [other])
    assert not deployer_without_access(me, False, [me])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_ci_managed_stacks_follow_the_readme_advice(stack: str, stack_graph: GraphOf) -> None:
    cluster = stack_value(stack, "adaptive-dask:cluster")
    assert cluster["deployerAdmin"] is False
    assert any(":role/adaptive-dask-deploy-" in arn for arn in cluster["adminArns"])
    # Whoever runs the preview, the access entries are the same: none follows the caller.
    g = stack_graph(stack)
    entries = sorted(e.inputs["principalArn"] for e in g.of_type(ENTRY))
    assert entries == sorted([*cluster["adminArns"], *cluster["previewArns"]])


# ------------------------------------------------------------------------------------ 6. DNS first


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_autoscaler_and_dask_wait_for_cluster_dns(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    coredns = next(n for n in g.of_type(ADDON) if n.inputs["addonName"] == "coredns")
    release = g.one("kubernetes:helm.sh/v3:Release")
    namespace = g.one("kubernetes:core/v1:Namespace")
    assert g.depends_on(release, coredns) and g.depends_on(namespace, coredns)


# ------------------------------------------------------------------------------------ 7. node AMI releases


@pytest.mark.parametrize("stack", ["dev"])
def test_node_groups_track_the_newest_ami_release_for_the_cluster_version(
    stack: str, stack_graph: GraphOf
) -> None:
    assert stack_value(stack, "adaptive-dask:cluster")["nodeAmiReleaseVersion"] == "latest"  # said outright
    g = stack_graph(stack)
    version = stack_value(stack, "adaptive-dask:cluster")["version"]
    calls = g.calls_to("aws:ssm/getParameter:getParameter")
    assert [c.args["name"] for c in calls] == [ami_release_parameter(version, "x86_64")]  # one per arch
    assert calls[0].args["name"] == (
        f"/aws/service/eks/optimized-ami/{version}/amazon-linux-2023/x86_64/standard/recommended/release_version"
    )
    for ng in g.of_type(NG):
        assert ng.inputs["releaseVersion"] == f"{version}.4-20261115"  # what the mock's SSM holds
        assert ng.inputs["version"] == version


def test_prod_is_unmoved_when_aws_publishes_a_new_ami_and_addon_builds() -> None:
    """The trap: a routine `up` after an AWS release rolled every node group (the scheduler's included) and
    moved the addons. Prod pins both, so the graph is the same whatever SSM and the addon API answer."""

    def versions(ami: str, addon_build: int) -> tuple[dict, dict]:
        mocks = RecordingMocks(region="eu-west-1")
        mocks.ami_release = ami
        answer = mocks.invokes["aws:eks/getAddonVersion:getAddonVersion"]
        mocks.invokes["aws:eks/getAddonVersion:getAddonVersion"] = lambda a: {
            **answer(a),
            "version": f"v9.9.{addon_build}-eksbuild.{addon_build}",
        }
        g = run_stack("prod", mocks=mocks)
        assert not g.calls_to("aws:ssm/getParameter:getParameter")
        assert not g.calls_to("aws:eks/getAddonVersion:getAddonVersion")
        groups = {n.name: (n.inputs["releaseVersion"], n.inputs["version"]) for n in g.of_type(NG)}
        addons = {n.inputs["addonName"]: n.inputs["addonVersion"] for n in g.of_type(ADDON)}
        return groups, addons

    assert versions("{version}.4-20261115", 1) == versions("{version}.9-20270301", 7)
    groups, addons = versions("{version}.9-20270301", 7)
    cluster = stack_value("prod", "adaptive-dask:cluster")
    assert {release for release, _ in groups.values()} == {cluster["nodeAmiReleaseVersion"]}
    assert addons == cluster["addonVersions"]


def test_dev_tracks_what_aws_publishes(stack_graph: GraphOf) -> None:
    g = stack_graph("dev")
    addons = {n.inputs["addonName"]: n.inputs["addonVersion"] for n in g.of_type(ADDON)}
    assert addons == {a: f"v1.35.0-{a}-eksbuild.1" for a in ("vpc-cni", "kube-proxy", "coredns")}


def test_a_pinned_ami_release_skips_the_lookup(stack_graph: GraphOf) -> None:
    pin = "1.35.2-20260105"
    g = stack_graph("dev", overrides={"adaptive-dask:cluster": json.dumps({"nodeAmiReleaseVersion": pin})})
    assert not g.calls_to("aws:ssm/getParameter:getParameter")
    assert {ng.inputs["releaseVersion"] for ng in g.of_type(NG)} == {pin}


@pytest.mark.parametrize(
    ("pin", "allowed"),
    [
        ("1.34.2-20260105", "is for Kubernetes 1.34"),
        ("v20260105", "EKS AMI release version"),
        ("1.35", "EKS AMI"),
    ],
)
def test_a_bad_ami_pin_is_a_config_error(pin: str, allowed: str) -> None:
    error, registered = registered_before_failure(
        "dev", RecordingMocks(), {"adaptive-dask:cluster": json.dumps({"nodeAmiReleaseVersion": pin})}
    )
    assert error.key == "adaptive-dask:cluster.nodeAmiReleaseVersion" and allowed in error.allowed
    assert registered == []


# ------------------------------------------------------------------------------------ 8. vpc-cni's IRSA role


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_vpc_cni_uses_its_own_irsa_role_and_the_node_role_has_no_cni_policy(
    stack: str, stack_graph: GraphOf
) -> None:
    g = stack_graph(stack)
    cni = next(n for n in g.of_type(ADDON) if n.inputs["addonName"] == "vpc-cni")
    (role,) = [
        r for r in g.of_type("aws:iam/role:Role") if r.state["arn"] == cni.inputs["serviceAccountRoleArn"]
    ]
    trust = json.loads(role.inputs["assumeRolePolicy"])
    condition = trust["Statement"][0]["Condition"]["StringEquals"]
    assert [v for k, v in condition.items() if k.endswith(":sub")] == [
        "system:serviceaccount:kube-system:aws-node"
    ]
    attachments = g.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    holders = [a for a in attachments if a.inputs["policyArn"].endswith("/AmazonEKS_CNI_Policy")]
    assert [a.inputs["role"] for a in holders] == [role.state["name"]]
    assert all(g.depends_on(cni, a) for a in holders)  # the addon starts with its permissions in place
    # ... and enforces NetworkPolicy (issue 12): without it EKS stores policies and enforces none.
    assert json.loads(cni.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
    assert (
        iam.VPC_CNI_POLICIES == ("AmazonEKS_CNI_Policy",) and "AmazonEKS_CNI_Policy" not in iam.NODE_POLICIES
    )


def test_a_deployer_without_any_entry_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    cluster = {"deployerAdmin": False, "adminArns": [f"arn:aws:iam::{ACCOUNT_ID}:role/someone-else"]}
    run_stack("dev", overrides={"adaptive-dask:cluster": json.dumps(cluster)})
    assert any(
        "deployerAdmin is false" in r.getMessage() and CALLER_ROLE_ARN in r.getMessage()
        for r in caplog.records
    )
    caplog.clear()
    run_stack(
        "dev", overrides={"adaptive-dask:cluster": json.dumps({**cluster, "adminArns": [CALLER_ROLE_ARN]})}
    )
    assert not any("deployerAdmin is false" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------ placeholders (issue 20)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_placeholder_admin_arns_stop_the_run_in_a_real_account_before_any_aws_resource(stack: str) -> None:
    """The committed stack files name account 111122223333 (AWS's documentation account). Deployed into
    another account as they are, a first `up` built the VPC and cluster (~20 min) before failing."""
    mocks = RecordingMocks(region=stack_value(stack, "aws:region"))
    real = "444455556666"
    mocks.invokes["aws:index/getCallerIdentity:getCallerIdentity"] = lambda a: {
        "id": real,
        "accountId": real,
        "arn": f"arn:aws:sts::{real}:assumed-role/deployer/ci-session",
        "userId": "AROAEXAMPLE:ci-session",
    }
    error, registered = registered_before_failure(stack, mocks)
    assert isinstance(error, ConfigError) and error.key == "adaptive-dask:cluster.adminArns[0]"
    assert "placeholder" in error.allowed and f"arn:aws:iam::{real}:role/" in error.allowed
    assert registered == ["pulumi:providers:aws"]


def test_placeholder_rule_is_about_the_documentation_account_only() -> None:
    own = ["arn:aws:iam::444455556666:role/deploy"]
    assert placeholder_admin_error(own, "444455556666") is None
    assert placeholder_admin_error(["arn:aws:iam::111122223333:role/x"], "111122223333") is None
    assert placeholder_admin_error([*own, "arn:aws:iam::111122223333:role/x"], "444455556666") is not None
