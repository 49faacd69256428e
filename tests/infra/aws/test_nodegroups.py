"""NodeGroups: node role, launch templates, placement, labels/taints, and scale-from-zero ASG tags."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import MappingProxyType

import pytest

from infra.aws.nodegroups import AMI_TYPE, launch_template_args, tag_resource_name
from infra.aws.tags import eks_taints, scale_from_zero_tags
from infra.config.settings import WorkerGroupConfig
from infra.facts.placement import Taint, pool_placement, tolerations
from testbed.infra.harness import Graph, Node, stack_value

GraphOf = Callable[..., Graph]
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
TEMPLATE = "k8s.io/cluster-autoscaler/node-template"
K8S_EFFECT = {
    "NO_SCHEDULE": "NoSchedule",
    "PREFER_NO_SCHEDULE": "PreferNoSchedule",
    "NO_EXECUTE": "NoExecute",
}


def pool(n: Node) -> str:
    return n.inputs["labels"]["adaptive-dask/pool"]


def template_of(g: Graph, node_group: Node) -> Node:
    return next(
        t
        for t in g.of_type("aws:ec2/launchTemplate:LaunchTemplate")
        if t.id == node_group.inputs["launchTemplate"]["id"]
    )


def worker_cfgs(stack: str) -> dict[str, dict]:
    return {w["name"]: w for w in stack_value(stack, "adaptive-dask:workerGroups")}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_launch_templates_require_imdsv2_hop_1_and_encrypt_gp3_roots(
    stack: str, stack_graph: GraphOf
) -> None:
    g = stack_graph(stack)
    groups = g.of_type(NODE_GROUP)
    assert len(g.of_type("aws:ec2/launchTemplate:LaunchTemplate")) == len(groups)
    system_disk = stack_value(stack, "adaptive-dask:systemNodeGroup")["diskGiB"]
    for ng in groups:
        lt = template_of(g, ng)
        assert lt.inputs["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1,
        }
        (device,) = lt.inputs["blockDeviceMappings"]
        ebs = device["ebs"]
        assert (ebs["volumeType"], ebs["encrypted"]) == ("gp3", "true")
        expected_disk = system_disk if pool(ng) == "system" else worker_cfgs(stack)[pool(ng)]["diskGiB"]
        assert ebs["volumeSize"] == expected_disk
        assert ng.inputs["launchTemplate"]["version"] == str(lt.state["latestVersion"])
        # What the ASG launches carries the common tags (provider default tags do not reach it).
        common = json.loads(g.one("pulumi:providers:aws").inputs["defaultTags"])["tags"]
        kinds = {spec["resourceType"]: spec["tags"] for spec in lt.inputs["tagSpecifications"]}
        assert set(kinds) == {"instance", "volume", "network-interface"}
        for tags in kinds.values():
            assert common.items() <= tags.items()


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_nodes_run_only_in_private_subnets_with_the_node_role(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    private = {
        s.id
        for s in g.of_type("aws:ec2/subnet:Subnet")
        if "kubernetes.io/role/internal-elb" in s.inputs["tags"]
    }
    (role,) = [
        r for r in g.of_type("aws:iam/role:Role") if "ec2.amazonaws.com" in r.inputs["assumeRolePolicy"]
    ]
    attached = {
        a.inputs["policyArn"].rsplit("/", 1)[1]
        for a in g.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.state["name"]
    }
    # No AmazonEKS_CNI_Policy: vpc-cni has its own IRSA role (test_cluster), pods borrowing the node role
    # get no ENI rights.
    assert attached == {"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly"}
    cluster = g.one("aws:eks/cluster:Cluster")
    for ng in g.of_type(NODE_GROUP):
        assert set(ng.inputs["subnetIds"]) == private
        assert ng.inputs["nodeRoleArn"] == role.state["arn"]
        assert ng.inputs["clusterName"] == cluster.state["name"]
        assert ng.inputs["version"] == cluster.inputs["version"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_system_group_is_fixed_size_on_demand_and_untainted(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    (system,) = [n for n in g.of_type(NODE_GROUP) if pool(n) == "system"]
    size = stack_value(stack, "adaptive-dask:systemNodeGroup")["size"]
    assert system.inputs["scalingConfig"] == {"minSize": size, "maxSize": size, "desiredSize": size}
    assert system.inputs["capacityType"] == "ON_DEMAND"
    assert system.inputs.get("taints", []) == []
    assert system.inputs["instanceTypes"] == [
        stack_value(stack, "adaptive-dask:systemNodeGroup")["instanceType"]
    ]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_worker_groups_match_their_config_and_repel_non_dask_pods(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    workers = {pool(n): n for n in g.of_type(NODE_GROUP) if pool(n) != "system"}
    cfgs = worker_cfgs(stack)
    assert set(workers) == set(cfgs)
    for name, ng in workers.items():
        cfg = cfgs[name]
        assert ng.inputs["capacityType"] == cfg["capacityType"]
        assert ng.inputs["instanceTypes"] == cfg["instanceTypes"]
        assert ng.inputs["scalingConfig"] == {
            "minSize": cfg["minSize"],
            "maxSize": cfg["maxSize"],
            "desiredSize": cfg["minSize"],
        }
        assert ng.inputs["labels"] == {**cfg.get("labels", {}), "adaptive-dask/pool": name}
        taints = [(t["key"], t["value"], t["effect"]) for t in ng.inputs["taints"]]
        assert taints[0] == ("adaptive-dask/dask-worker", "true", "NO_SCHEDULE")
        assert taints[1:] == [
            (
                t["key"],
                t.get("value", ""),
                t["effect"].upper().replace("NO", "NO_").replace("PREFERNO_", "PREFER_NO_"),
            )
            for t in cfg.get("taints", [])
        ]
        assert ng.inputs["amiType"] == "AL2023_x86_64_STANDARD"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_scale_from_zero_tags_on_each_asg_match_the_node_group_exactly(
    stack: str, stack_graph: GraphOf
) -> None:
    g = stack_graph(stack)
    tags = g.of_type("aws:autoscaling/tag:Tag")
    workers = [n for n in g.of_type(NODE_GROUP) if pool(n) != "system"]
    assert workers
    covered = set()
    for ng in workers:
        asg = ng.state["resources"][0]["autoscalingGroups"][0]["name"]
        mine = {
            t.inputs["tag"]["key"]: t.inputs["tag"]["value"]
            for t in tags
            if t.inputs["autoscalingGroupName"] == asg
        }
        assert all(
            t.inputs["tag"]["propagateAtLaunch"] is False
            for t in tags
            if t.inputs["autoscalingGroupName"] == asg
        )
        covered.add(asg)
        labels = {
            k.removeprefix(f"{TEMPLATE}/label/"): v
            for k, v in mine.items()
            if k.startswith(f"{TEMPLATE}/label/")
        }
        # Exactly the node group's labels, plus the capacity-type label EKS puts on every node.
        assert labels == {**ng.inputs["labels"], "eks.amazonaws.com/capacityType": ng.inputs["capacityType"]}
        taints = {
            k.removeprefix(f"{TEMPLATE}/taint/"): v
            for k, v in mine.items()
            if k.startswith(f"{TEMPLATE}/taint/")
        }
        assert taints == {t["key"]: f"{t['value']}:{K8S_EFFECT[t['effect']]}" for t in ng.inputs["taints"]}
        disk = template_of(g, ng).inputs["blockDeviceMappings"][0]["ebs"]["volumeSize"]
        assert mine[f"{TEMPLATE}/resources/ephemeral-storage"] == f"{int(disk)}Gi"
        assert len(mine) == len(labels) + len(taints) + 1
    assert {
        t.inputs["autoscalingGroupName"] for t in tags
    } == covered  # no stray tags (none on the system ASG)
    # The tags are applied only once the node group (and so its ASG) exists.
    for t in tags:
        assert any(g.depends_on(t, ng) for ng in workers)


# ---- pure functions -------------------------------------------------------------------------------

GROUP = WorkerGroupConfig(
    name="gpu",
    instance_types=("g5.xlarge",),
    capacity_type="SPOT",
    min_size=0,
    max_size=3,
    disk_gib=200,
    labels=MappingProxyType({"example.com/accel": "a10g"}),
    taints=(Taint("nvidia.com/gpu", "", "NoExecute"),),
)


def test_scale_from_zero_tags_pure() -> None:
    assert scale_from_zero_tags(GROUP) == {
        f"{TEMPLATE}/label/example.com/accel": "a10g",
        f"{TEMPLATE}/label/adaptive-dask/pool": "gpu",
        f"{TEMPLATE}/label/eks.amazonaws.com/capacityType": "SPOT",
        f"{TEMPLATE}/taint/adaptive-dask/dask-worker": "true:NoSchedule",
        f"{TEMPLATE}/taint/nvidia.com/gpu": ":NoExecute",
        f"{TEMPLATE}/resources/ephemeral-storage": "200Gi",
    }


def test_labels_taints_and_pool_agree() -> None:
    # One vocabulary: the nodes' labels/taints (AWS layer) and the pods' selector/tolerations (Kubernetes
    # layer) come from the same group properties.
    assert GROUP.node_labels == {"example.com/accel": "a10g", "adaptive-dask/pool": "gpu"}
    assert eks_taints(GROUP.node_taints) == [
        {"key": "adaptive-dask/dask-worker", "value": "true", "effect": "NO_SCHEDULE"},
        {"key": "nvidia.com/gpu", "value": "", "effect": "NO_EXECUTE"},
    ]
    assert pool_placement([GROUP.name]) == {"nodeSelector": {"adaptive-dask/pool": "gpu"}}
    assert all(GROUP.node_labels[k] == v for k, v in pool_placement([GROUP.name])["nodeSelector"].items())
    assert [(t["key"], t["value"], t["effect"]) for t in tolerations(GROUP.node_taints)] == [
        (t.key, t.value, t.effect) for t in GROUP.node_taints
    ]


def test_launch_template_args_pure() -> None:
    args = launch_template_args("lt", 64, {"Team": "data"})
    assert args["metadata_options"]["http_tokens"] == "required"
    assert args["metadata_options"]["http_put_response_hop_limit"] == 1
    assert args["block_device_mappings"][0]["ebs"]["volume_size"] == 64
    assert args["tag_specifications"][0]["tags"] == {"Team": "data", "Name": "lt"}
    assert AMI_TYPE == "AL2023_x86_64_STANDARD"  # arm64 is refused by the config
    assert tag_resource_name("g", "a/b") != tag_resource_name("g", "a/c")
    assert tag_resource_name("g", "a/b") == tag_resource_name("g", "a/b")
