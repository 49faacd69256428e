"""The real program (infra/__main__.py via runpy) under mocks, for every committed stack file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable

import pytest

from infra.config.aws import DEFAULT_NETWORK
from infra.errors import ConfigError
from testbed.infra.harness import (
    INFRA_DIR,
    REPO_ROOT,
    Graph,
    install,
    load_stack_config,
    run_graph,
    run_main,
    stack_names,
    stack_value,
)

with warnings.catch_warnings():  # parliament's regexes trip DeprecationWarnings when compiled
    warnings.simplefilter("ignore", DeprecationWarning)
    from parliament import analyze_policy_string

STACKS = stack_names()
AWS_STACKS = [s for s in STACKS if stack_value(s, "adaptive-dask:target", "aws") == "aws"]
COMPONENTS = {"adaptive-dask:aws:Network", "adaptive-dask:aws:EksCluster", "adaptive-dask:aws:NodeGroups"}
EXPORTS = {
    "region",
    "vpcId",
    "publicSubnetIds",
    "privateSubnetIds",
    "clusterName",
    "clusterEndpoint",
    "clusterVersion",
    "kubeconfig",
    "oidcProviderArn",
    "oidcIssuer",
    "nodeGroupNames",
    "asgNames",
}

GraphOf = Callable[..., Graph]


def network_value(stack: str, field: str) -> object:
    return {**DEFAULT_NETWORK, **stack_value(stack, "adaptive-dask:network", {})}[field]


def worker_group_names(stack: str) -> set[str]:
    return {g["name"] for g in stack_value(stack, "adaptive-dask:workerGroups", [{"name": "workers"}])}


def test_dev_and_prod_stacks_exist_and_are_covered() -> None:
    assert {"dev", "prod"} <= set(STACKS)
    assert stack_value("prod", "adaptive-dask:production") is True


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_subnets_are_two_per_az_in_distinct_zones(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    az_count = network_value(stack, "azCount")
    subnets = g.of_type("aws:ec2/subnet:Subnet")
    assert len(subnets) == 2 * az_count
    public = [s for s in subnets if "kubernetes.io/role/elb" in s.inputs["tags"]]
    private = [s for s in subnets if "kubernetes.io/role/internal-elb" in s.inputs["tags"]]
    assert len(public) == len(private) == az_count
    for tier in (public, private):
        assert len({s.inputs["availabilityZone"] for s in tier}) == az_count


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_nat_gateways_follow_the_nat_mode(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    expected = 1 if network_value(stack, "natMode") == "single" else network_value(stack, "azCount")
    assert len(g.of_type("aws:ec2/natGateway:NatGateway")) == expected
    assert len(g.of_type("aws:ec2/eip:Eip")) == expected


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_aws_resource_and_invoke_uses_the_one_explicit_provider(
    stack: str, stack_graph: GraphOf
) -> None:
    g = stack_graph(stack)
    provider = g.one("pulumi:providers:aws")
    aws_resources = [n for n in g.nodes if n.type.startswith("aws:")]
    assert aws_resources
    assert {n.provider_urn for n in aws_resources} == {provider.urn}
    assert g.calls and all(c.provider.startswith(provider.urn + "::") for c in g.calls)
    for n in g.nodes:
        if n.type.startswith("kubernetes:"):
            assert n.provider_urn == g.one("pulumi:providers:kubernetes").urn


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_stack_file_disables_default_providers(stack: str) -> None:
    disabled = stack_value(stack, "pulumi:disable-default-providers", [])
    assert {"aws", "kubernetes"} <= set(disabled)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_resource_is_parented_to_a_layer_component(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    stack_urn = f"urn:pulumi:{stack}::adaptive-dask::pulumi:pulumi:Stack::adaptive-dask-{stack}"
    components = {n.urn: n for n in g.nodes if not n.custom}
    assert {n.type for n in components.values()} >= COMPONENTS
    for n in components.values():  # layers sit directly under the stack; sub-components inside a layer
        assert n.parent == stack_urn if n.type in COMPONENTS else n.parent in {stack_urn, *components}
    for n in g.nodes:
        if n.custom and n.type != "pulumi:providers:aws":
            assert n.parent in components, f"{n.type} {n.name} is not inside a layer component"
    network = g.one("adaptive-dask:aws:Network")
    assert {n.type for n in g.children(network)} >= {"aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet"}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_aws_layer_iam_policies_pass_the_parliament_linter(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    mine = {n.urn for n in g.nodes if n.type in COMPONENTS}
    policies = [n for n in g.of_type("aws:iam/rolePolicy:RolePolicy") if n.parent in mine]
    assert policies
    for policy in policies:
        findings = analyze_policy_string(policy.inputs["policy"]).findings
        assert [(f.issue, f.detail) for f in findings] == [], policy.name


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_provider_default_tags_carry_the_common_tags(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    tags = json.loads(g.one("pulumi:providers:aws").inputs["defaultTags"])["tags"]
    expected = {"Project": "adaptive-dask", "Stack": stack, "ManagedBy": "pulumi"}
    expected.update(stack_value(stack, "adaptive-dask:tags", {}))
    assert tags == expected


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_exports(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    assert set(g.exports) >= EXPORTS  # the AWS layer's; the Kubernetes layer adds its own
    assert "kubeconfig" in g.secret_exports
    assert g.exports["vpcId"] == g.one("aws:ec2/vpc:Vpc").id
    subnets = g.of_type("aws:ec2/subnet:Subnet")
    private = {s.id for s in subnets if "kubernetes.io/role/internal-elb" in s.inputs["tags"]}
    public = {s.id for s in subnets if "kubernetes.io/role/elb" in s.inputs["tags"]}
    assert set(g.exports["privateSubnetIds"]) == private and set(g.exports["publicSubnetIds"]) == public
    assert g.exports["region"] == stack_value(stack, "aws:region")
    cluster = g.one("aws:eks/cluster:Cluster")
    assert g.exports["clusterName"] == cluster.state["name"]
    assert g.exports["clusterEndpoint"] == cluster.state["endpoint"]
    assert (
        g.exports["oidcProviderArn"]
        == g.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider").state["arn"]
    )
    assert set(g.exports["nodeGroupNames"]) == {"system"} | worker_group_names(stack)
    assert set(g.exports["asgNames"]) == worker_group_names(stack)
    node_groups = {n.state["nodeGroupName"]: n for n in g.of_type("aws:eks/nodeGroup:NodeGroup")}
    for group, asg in g.exports["asgNames"].items():
        node_group = node_groups[g.exports["nodeGroupNames"][group]]
        assert node_group.inputs["labels"]["adaptive-dask/pool"] == group
        assert asg == node_group.state["resources"][0]["autoscalingGroups"][0]["name"]
    kubeconfig = json.loads(g.exports["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == cluster.state["endpoint"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_worker_node_groups_leave_desired_size_to_the_autoscaler(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    groups = g.of_type("aws:eks/nodeGroup:NodeGroup")
    workers = [n for n in groups if n.inputs["labels"]["adaptive-dask/pool"] != "system"]
    assert {n.inputs["labels"]["adaptive-dask/pool"] for n in workers} == worker_group_names(stack)
    for n in workers:
        assert n.ignore_changes == ["scalingConfig.desiredSize"]  # camelCase: nested paths are not translated
    system = [n for n in groups if n.inputs["labels"]["adaptive-dask/pool"] == "system"]
    assert len(system) == 1 and system[0].ignore_changes == []


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_dependency_order(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    cluster = g.one("aws:eks/cluster:Cluster")
    log_group = next(
        n for n in g.of_type("aws:cloudwatch/logGroup:LogGroup") if "/aws/eks/" in n.inputs["name"]
    )
    assert log_group.urn in cluster.dependencies  # created first, so EKS cannot create it without retention
    for attachment in g.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        if "cluster" in attachment.name:
            assert g.depends_on(cluster, attachment)
    addons = {n.inputs["addonName"]: n for n in g.of_type("aws:eks/addon:Addon")}
    assert set(addons) == {"vpc-cni", "kube-proxy", "coredns"}
    node_groups = g.of_type("aws:eks/nodeGroup:NodeGroup")
    for ng in node_groups:
        assert g.depends_on(ng, addons["vpc-cni"]) and g.depends_on(ng, addons["kube-proxy"])
        assert g.depends_on(addons["coredns"], ng)
        assert not g.depends_on(ng, addons["coredns"])
    provider = g.one("pulumi:providers:kubernetes")
    for association in g.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation"):
        assert g.depends_on(provider, association)
    igw = g.one("aws:ec2/internetGateway:InternetGateway")
    assert all(g.depends_on(nat, igw) for nat in g.of_type("aws:ec2/natGateway:NatGateway"))


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_preview_tolerates_unknown_outputs(stack: str, stack_graph: GraphOf) -> None:
    up, preview = stack_graph(stack), stack_graph(stack, preview=True)
    assert {(n.type, n.name) for n in preview.nodes} == {(n.type, n.name) for n in up.nodes}
    # Computed outputs are unknown in preview: ids, the endpoint, ASG names ...
    assert {"vpcId", "clusterEndpoint", "asgNames", "kubeconfig"} <= preview.unknown_exports
    # ... while config-derived facts are known.
    assert preview.exports["clusterName"] == up.exports["clusterName"]
    tag = preview.of_type("aws:autoscaling/tag:Tag")[0]
    assert type(tag.inputs.get("autoscalingGroupName")).__name__ == "Unknown"


def test_target_local_builds_no_aws_resources(stack_graph: GraphOf) -> None:
    # The AWS-only keys dev sets are unset with it (the local target refuses them).
    g = stack_graph("dev", overrides={"adaptive-dask:target": "local", "adaptive-dask:budget": ""})
    assert [n for n in g.nodes if n.type.startswith("aws:") or n.type == "pulumi:providers:aws"] == []
    assert g.calls == []


def test_bad_config_fails_before_any_resource_is_registered() -> None:
    _, config, _ = load_stack_config("prod")
    config["adaptive-dask:workerGroups"] = json.dumps([{"name": "w", "minSize": 5, "maxSize": 2}])
    mocks, monitor = install(stack="prod", config=config)
    with pytest.raises(ConfigError) as caught:
        run_graph(run_main, mocks, monitor)
    assert caught.value.key == "adaptive-dask:workerGroups[0].maxSize"
    assert monitor.records == [] and mocks.calls == []


# The CLI's language host: a fresh interpreter, cwd infra/, infra/ (not the root) on sys.path, runpy.
_CLI_DRIVER = textwrap.dedent(
    """
    import asyncio, importlib.util, json, os, sys
    root, stack = sys.argv[1], sys.argv[2]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != root]
    sys.path.insert(0, os.path.join(root, "infra"))
    assert importlib.util.find_spec("infra") is None, "repo root leaked onto sys.path"
    path = os.path.join(root, "testbed", "infra", "harness.py")
    spec = importlib.util.spec_from_file_location("harness", path)
    harness = sys.modules["harness"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    asyncio.set_event_loop(asyncio.new_event_loop())
    graph = harness.run_stack(stack)
    print(json.dumps({"resources": sorted(f"{n.type}::{n.name}" for n in graph.nodes),
                      "exports": sorted(graph.exports)}))
    """
)


@pytest.mark.parametrize("stack", STACKS)
def test_main_runs_as_the_cli_runs_it(stack: str, stack_graph: GraphOf) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the CLI sets none
    proc = subprocess.run(
        [sys.executable, "-c", _CLI_DRIVER, str(REPO_ROOT), stack],
        cwd=INFRA_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    in_process = stack_graph(stack)
    assert result["resources"] == sorted(f"{n.type}::{n.name}" for n in in_process.nodes)
    assert result["exports"] == sorted(in_process.exports)


def test_cli_driver_really_hides_the_repo_root() -> None:
    """Negative control: without infra/__main__.py's sys.path fix, `import infra` fails in that setup."""
    probe = (
        "import sys, os; sys.path[:] = [p for p in sys.path if os.path.abspath(p or '.') != sys.argv[1]]; "
        "import infra"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(REPO_ROOT)],
        cwd=INFRA_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "No module named 'infra'" in proc.stderr


def test_dev_and_prod_have_the_intended_shapes(stack_graph: GraphOf) -> None:
    dev, prod = stack_graph("dev"), stack_graph("prod")
    nat = "aws:ec2/natGateway:NatGateway"
    assert (len(dev.of_type("aws:ec2/subnet:Subnet")), len(dev.of_type(nat))) == (4, 1)
    assert (len(prod.of_type("aws:ec2/subnet:Subnet")), len(prod.of_type(nat))) == (6, 3)

    def pools(g: Graph) -> dict[str, dict]:
        return {
            n.inputs["labels"]["adaptive-dask/pool"]: n.inputs
            for n in g.of_type("aws:eks/nodeGroup:NodeGroup")
        }

    dev_workers = [p for name, p in pools(dev).items() if name != "system"]
    assert any(p["capacityType"] == "SPOT" and p["scalingConfig"]["minSize"] == 0 for p in dev_workers)
    prod_pools = pools(prod)
    assert prod_pools["system"]["capacityType"] == "ON_DEMAND"
    assert {p["capacityType"] for name, p in prod_pools.items() if name != "system"} == {"SPOT", "ON_DEMAND"}

    prod_cluster, dev_cluster = prod.one("aws:eks/cluster:Cluster"), dev.one("aws:eks/cluster:Cluster")
    assert "0.0.0.0/0" not in prod_cluster.inputs["vpcConfig"]["publicAccessCidrs"]
    assert (
        prod_cluster.inputs["deletionProtection"] is True
        and dev_cluster.inputs["deletionProtection"] is False
    )

    def retention(g: Graph) -> float:
        (group,) = [
            n
            for n in g.of_type("aws:cloudwatch/logGroup:LogGroup")
            if n.inputs["name"].startswith("/aws/eks/")
        ]
        return group.inputs["retentionInDays"]

    assert retention(prod) > retention(dev)


def test_readme_layout_names_every_folder_and_module_of_the_program() -> None:
    readme = (REPO_ROOT / "docs" / "architecture.md").read_text()
    layout = readme.split("## Layout")[1].split("\n## ")[0]
    infra = REPO_ROOT / "infra"
    for folder in sorted(p for p in infra.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert f"`infra/{folder.name}/`" in layout, folder.name
        for module in sorted(folder.glob("*.py")):
            if module.name != "__init__.py":
                assert f"`{module.name}`" in layout.split(f"`infra/{folder.name}/`")[1].split("\n")[0], module
    for module in sorted(infra.glob("*.py")):
        if module.name != "__init__.py":
            assert f"`{module.name}`" in layout, module.name
