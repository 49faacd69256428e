"""Network: subnet carving, tagging, NAT routing per AZ, locked default SG, flow logs, S3 endpoint."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.aws.network import carve_subnets, nat_subnet_indexes
from infra.errors import ConfigError
from testbed.infra.harness import ACCOUNT_ID, Graph, Node, RecordingMocks, run_stack

GraphOf = Callable[..., Graph]
SUBNET = "aws:ec2/subnet:Subnet"


@given(
    prefix=st.integers(min_value=16, max_value=20),
    az_count=st.integers(min_value=1, max_value=3),
    base=st.sampled_from(["10.0.0.0", "10.128.0.0", "172.16.0.0", "192.168.0.0", "100.64.0.0"]),
)
def test_carved_subnets_are_disjoint_inside_the_vpc_and_big_enough(
    prefix: int, az_count: int, base: str
) -> None:
    vpc = ipaddress.IPv4Network(f"{base}/{prefix}")
    plans = carve_subnets(str(vpc), az_count)
    nets = [ipaddress.IPv4Network(c) for p in plans for c in (p.private_cidr, p.public_cidr)]
    assert len(nets) == 2 * az_count
    assert all(n.subnet_of(vpc) for n in nets)
    assert all(not a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert all(n.prefixlen <= 24 for n in nets)  # >= 256 addresses each: room for nodes, pods, LBs
    for p in plans:  # private subnets hold the pods (VPC CNI): bigger than public ones
        assert (
            ipaddress.IPv4Network(p.private_cidr).num_addresses
            > ipaddress.IPv4Network(p.public_cidr).num_addresses
        )


def test_nat_placement() -> None:
    assert nat_subnet_indexes("single", 3) == [0]
    assert nat_subnet_indexes("per-az", 3) == [0, 1, 2]


def _tier(g: Graph, tag: str) -> list[Node]:
    return sorted(
        (s for s in g.of_type(SUBNET) if tag in s.inputs["tags"]), key=lambda s: s.inputs["cidrBlock"]
    )


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_subnets_are_tagged_for_load_balancers_and_never_map_public_ips(
    stack: str, stack_graph: GraphOf
) -> None:
    g = stack_graph(stack)
    cluster_name = g.one("aws:eks/cluster:Cluster").inputs["name"]
    vpc = g.one("aws:ec2/vpc:Vpc")
    cidr = ipaddress.IPv4Network(vpc.inputs["cidrBlock"])
    for subnet in g.of_type(SUBNET):
        tags = subnet.inputs["tags"]
        assert tags[f"kubernetes.io/cluster/{cluster_name}"] == "shared"
        assert ("kubernetes.io/role/elb" in tags) != ("kubernetes.io/role/internal-elb" in tags)
        assert subnet.inputs["mapPublicIpOnLaunch"] is False
        assert subnet.inputs["vpcId"] == vpc.id
        assert ipaddress.IPv4Network(subnet.inputs["cidrBlock"]).subnet_of(cidr)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_vpc_dns_and_locked_default_security_group(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    vpc = g.one("aws:ec2/vpc:Vpc")
    assert vpc.inputs["enableDnsSupport"] is True and vpc.inputs["enableDnsHostnames"] is True
    sg = g.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert sg.inputs["vpcId"] == vpc.id
    assert sg.inputs.get("ingress", []) == [] and sg.inputs.get("egress", []) == []
    assert "ingress" in sg.inputs and "egress" in sg.inputs  # sent explicitly, so existing rules are removed


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_public_route_table_uses_the_internet_gateway(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    igw = g.one("aws:ec2/internetGateway:InternetGateway")
    public_ids = {s.id for s in _tier(g, "kubernetes.io/role/elb")}
    tables = {t.id: t for t in g.of_type("aws:ec2/routeTable:RouteTable")}
    assoc = g.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
    public_tables = {a.inputs["routeTableId"] for a in assoc if a.inputs["subnetId"] in public_ids}
    assert len(public_tables) == 1
    (routes,) = [tables[t].inputs["routes"] for t in public_tables]
    assert routes == [{"cidrBlock": "0.0.0.0/0", "gatewayId": igw.id}]
    assert {a.inputs["subnetId"] for a in assoc} == {
        s.id for s in g.of_type(SUBNET)
    }  # every subnet associated


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_private_subnets_route_through_a_nat_in_their_own_az_when_per_az(
    stack: str, stack_graph: GraphOf
) -> None:
    g = stack_graph(stack)
    subnets = {s.id: s for s in g.of_type(SUBNET)}
    nats = {n.id: n for n in g.of_type("aws:ec2/natGateway:NatGateway")}
    eips = {e.state["allocationId"]: e for e in g.of_type("aws:ec2/eip:Eip")}
    tables = {t.id: t for t in g.of_type("aws:ec2/routeTable:RouteTable")}
    for nat in nats.values():
        assert nat.inputs["allocationId"] in eips
        assert (
            "kubernetes.io/role/elb" in subnets[nat.inputs["subnetId"]].inputs["tags"]
        )  # NATs live in public subnets
    per_az = len(nats) > 1
    private = _tier(g, "kubernetes.io/role/internal-elb")
    used = set()
    for assoc in g.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation"):
        subnet = subnets[assoc.inputs["subnetId"]]
        if subnet not in private:
            continue
        (route,) = tables[assoc.inputs["routeTableId"]].inputs["routes"]
        assert route["cidrBlock"] == "0.0.0.0/0" and "gatewayId" not in route
        nat = nats[route["natGatewayId"]]
        used.add(nat.id)
        if per_az:
            assert (
                subnets[nat.inputs["subnetId"]].inputs["availabilityZone"]
                == subnet.inputs["availabilityZone"]
            )
    assert used == set(nats)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_s3_gateway_endpoint_on_exactly_the_private_route_tables(stack: str, stack_graph: GraphOf) -> None:
    g = stack_graph(stack)
    endpoint = g.one("aws:ec2/vpcEndpoint:VpcEndpoint")
    region = g.one("pulumi:providers:aws").inputs["region"]
    assert endpoint.inputs["serviceName"] == f"com.amazonaws.{region}.s3"
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    private_ids = {s.id for s in _tier(g, "kubernetes.io/role/internal-elb")}
    private_tables = {
        a.inputs["routeTableId"]
        for a in g.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
        if a.inputs["subnetId"] in private_ids
    }
    assert set(endpoint.inputs["routeTableIds"]) == private_tables


def test_flow_logs_on_write_to_their_own_log_group_with_a_scoped_role(stack_graph: GraphOf) -> None:
    g = stack_graph("prod")
    flow = g.one("aws:ec2/flowLog:FlowLog")
    log_group = next(
        n for n in g.of_type("aws:cloudwatch/logGroup:LogGroup") if n.inputs["name"].startswith("/aws/vpc/")
    )
    assert flow.inputs["vpcId"] == g.one("aws:ec2/vpc:Vpc").id
    assert flow.inputs["trafficType"] == "ALL"
    assert flow.inputs["logDestination"] == log_group.state["arn"]
    assert log_group.inputs["retentionInDays"] == 90
    role = next(r for r in g.of_type("aws:iam/role:Role") if r.state["arn"] == flow.inputs["iamRoleArn"])
    trust = json.loads(role.inputs["assumeRolePolicy"])
    (statement,) = trust["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}
    policy = next(p for p in g.of_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.id)
    statements = json.loads(policy.inputs["policy"])["Statement"]
    writes = [s for s in statements if "logs:PutLogEvents" in s["Action"]]
    assert [s["Resource"] for s in writes] == [log_group.state["arn"] + ":*"]  # this group's streams only
    unscoped = {a for s in statements if s["Resource"] == "*" for a in s["Action"]}
    assert unscoped == {"logs:DescribeLogGroups"}  # read-only, and AWS offers no resource scope for it


def test_flow_logs_off_creates_nothing_for_them(stack_graph: GraphOf) -> None:
    g = stack_graph("dev")
    assert g.of_type("aws:ec2/flowLog:FlowLog") == []
    assert all(
        not n.inputs["name"].startswith("/aws/vpc/") for n in g.of_type("aws:cloudwatch/logGroup:LogGroup")
    )


@pytest.mark.parametrize(("nat_mode", "az_count"), [("single", 3), ("per-az", 2)])
def test_nat_count_for_other_shapes(nat_mode: str, az_count: int, stack_graph: GraphOf) -> None:
    g = stack_graph(
        "dev",
        overrides={
            "adaptive-dask:network": json.dumps(
                {"cidr": "10.9.0.0/18", "azCount": az_count, "natMode": nat_mode}
            )
        },
    )
    assert len(g.of_type(SUBNET)) == 2 * az_count
    assert len(g.of_type("aws:ec2/natGateway:NatGateway")) == (1 if nat_mode == "single" else az_count)
    assert len(g.of_type("aws:ec2/routeTable:RouteTable")) == az_count + 1


def test_region_with_too_few_zones_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as caught:
        run_stack("dev", mocks=RecordingMocks(region="us-east-1", zones=1))
    assert caught.value.key == "adaptive-dask:network.azCount"
    assert "only 1 availability zones" in caught.value.allowed


def test_a_pinned_zone_the_region_lacks_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as caught:
        run_stack("prod", mocks=RecordingMocks(region="eu-west-1", zones=2))
    assert caught.value.key == "adaptive-dask:network.zoneIds[2]" and caught.value.value == "euw1-az3"
    assert "euw1-az1, euw1-az2" in caught.value.allowed


def test_subnets_use_the_zones_the_region_reports(stack_graph: GraphOf) -> None:
    g = stack_graph("prod")
    (call,) = g.calls_to("aws:index/getAvailabilityZones:getAvailabilityZones")
    assert call.args["state"] == "available"
    zones = {s.inputs["availabilityZone"] for s in g.of_type(SUBNET)}
    assert zones == set(g.mocks.zone_names[:3])
