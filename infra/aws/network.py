"""`Network`: the VPC the cluster lives in - public subnets for load balancers and NAT, private for nodes.

Why this shape: nodes never get public IPs (private subnets behind NAT), load balancers find their
subnets by the `kubernetes.io/role/*` tags, the default security group is emptied so nothing can lean
on it, and S3 traffic (image layers, Dask spill) skips the NAT through a free gateway endpoint.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws import iam
from infra.aws.component import AwsComponent
from infra.aws.tags import name_tag, private_subnet_tags, public_subnet_tags
from infra.config.settings import NetworkConfig


@dataclass(frozen=True)
class SubnetPlan:
    az_index: int
    private_cidr: str
    public_cidr: str


def carve_subnets(cidr: str, az_count: int) -> list[SubnetPlan]:
    """Split the VPC CIDR: quarters 0..2 are the private subnets (one per AZ, where the pods' IPs come
    from with the VPC CNI), the last quarter is cut in four for the small public subnets."""
    vpc = ipaddress.IPv4Network(cidr)
    quarters = list(vpc.subnets(prefixlen_diff=2))
    publics = list(quarters[3].subnets(prefixlen_diff=2))
    if not 1 <= az_count <= 3:
        raise ValueError(f"az_count must be 1..3, got {az_count}")
    return [SubnetPlan(i, str(quarters[i]), str(publics[i])) for i in range(az_count)]


def nat_subnet_indexes(nat_mode: str, az_count: int) -> list[int]:
    """Which public subnets get a NAT gateway: one shared (cheap) or one per AZ (an AZ outage stays local)."""
    return [0] if nat_mode == "single" else list(range(az_count))


@dataclass(frozen=True)
class NetworkArgs:
    config: NetworkConfig
    zones: tuple[str, ...]  # one zone name per AZ, chosen from the live account (infra.live)
    cluster_name: str
    region: str
    account_id: pulumi.Input[str]
    protect: bool = False  # production: a Pulumi-protected VPC (a destroy stops before deleting anything)


class Network(AwsComponent):
    """VPC, subnets per AZ, IGW, NAT, route tables, locked default SG, optional flow logs, S3 endpoint."""

    TYPE = "adaptive-dask:aws:Network"

    # Set by the sections of __init__ (in this order); the cluster layer and the tests read them.
    vpc: aws.ec2.Vpc
    default_security_group: aws.ec2.DefaultSecurityGroup
    internet_gateway: aws.ec2.InternetGateway
    public_subnets: list[aws.ec2.Subnet]
    private_subnets: list[aws.ec2.Subnet]
    public_route_table: aws.ec2.RouteTable
    eips: list[aws.ec2.Eip]
    nat_gateways: list[aws.ec2.NatGateway]
    private_route_tables: list[aws.ec2.RouteTable]
    s3_endpoint: aws.ec2.VpcEndpoint
    flow_log: aws.ec2.FlowLog | None
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: NetworkArgs, provider: aws.Provider, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, provider, opts)
        cfg = args.config

        self._vpc(name, cfg, args.protect)
        self._subnets(name, args)
        self._public_routes(name)
        self._nat_gateways(name, cfg)
        self._private_routes(name, cfg)
        self._s3_endpoint(name, args.region)
        self.flow_log = self._flow_logs(name, cfg, args.account_id) if cfg.flow_logs else None

        self.vpc_id = self.vpc.id
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in self.public_subnets])
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in self.private_subnets])
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
            }
        )

    def _vpc(self, name: str, cfg: NetworkConfig, protect: bool) -> None:
        """The VPC, its default security group emptied, and its internet gateway."""
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=cfg.cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,  # required by the private EKS endpoint
            tags=name_tag(name),
            opts=self._opts(protect=protect),
        )
        # Adopt the default SG and strip every rule: nothing may rely on its allow-all-internal default.
        self.default_security_group = aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=self.vpc.id,
            ingress=[],
            egress=[],
            tags=name_tag(f"{name}-default-locked"),
            opts=self._opts(),
        )
        self.internet_gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags=name_tag(name), opts=self._opts()
        )

    def _subnets(self, name: str, args: NetworkArgs) -> None:
        """One public and one private subnet per AZ, tagged for the load balancers that look them up."""
        self.public_subnets = []
        self.private_subnets = []
        for plan in carve_subnets(args.config.cidr, args.config.az_count):
            az = args.zones[plan.az_index]
            self.public_subnets.append(
                aws.ec2.Subnet(
                    f"{name}-public-{plan.az_index}",
                    vpc_id=self.vpc.id,
                    cidr_block=plan.public_cidr,
                    availability_zone=az,
                    map_public_ip_on_launch=False,  # NAT and load balancers bring their own addresses
                    tags=public_subnet_tags(args.cluster_name, f"{name}-public-{plan.az_index}"),
                    opts=self._opts(),
                )
            )
            self.private_subnets.append(
                aws.ec2.Subnet(
                    f"{name}-private-{plan.az_index}",
                    vpc_id=self.vpc.id,
                    cidr_block=plan.private_cidr,
                    availability_zone=az,
                    map_public_ip_on_launch=False,
                    tags=private_subnet_tags(args.cluster_name, f"{name}-private-{plan.az_index}"),
                    opts=self._opts(),
                )
            )

    def _public_routes(self, name: str) -> None:
        """One route table for every public subnet: the internet through the gateway."""
        self.public_route_table = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": self.internet_gateway.id}],
            tags=name_tag(f"{name}-public"),
            opts=self._opts(),
        )
        for i, subnet in enumerate(self.public_subnets):
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}",
                subnet_id=subnet.id,
                route_table_id=self.public_route_table.id,
                opts=self._opts(),
            )

    def _nat_gateways(self, name: str, cfg: NetworkConfig) -> None:
        """The NAT gateways (one shared, or one per AZ) and their addresses, in the public subnets."""
        self.eips = []
        self.nat_gateways = []
        for i in nat_subnet_indexes(cfg.nat_mode, cfg.az_count):
            eip = aws.ec2.Eip(
                f"{name}-nat-{i}", domain="vpc", tags=name_tag(f"{name}-nat-{i}"), opts=self._opts()
            )
            self.eips.append(eip)
            self.nat_gateways.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.allocation_id,
                    subnet_id=self.public_subnets[i].id,
                    connectivity_type="public",
                    tags=name_tag(f"{name}-nat-{i}"),
                    # The NAT needs the IGW attached before it can route.
                    opts=self._opts(depends_on=[self.internet_gateway]),
                )
            )

    def _private_routes(self, name: str, cfg: NetworkConfig) -> None:
        """A route table per private subnet: the internet through its NAT gateway (its AZ's, or the one)."""
        self.private_route_tables = []
        for i, subnet in enumerate(self.private_subnets):
            nat = self.nat_gateways[i if cfg.nat_mode == "per-az" else 0]
            table = aws.ec2.RouteTable(
                f"{name}-private-{i}",
                vpc_id=self.vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                tags=name_tag(f"{name}-private-{i}"),
                opts=self._opts(),
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=table.id, opts=self._opts()
            )
            self.private_route_tables.append(table)

    def _s3_endpoint(self, name: str, region: str) -> None:
        """A free gateway endpoint: the nodes' S3 traffic (image layers, Dask spill) skips the NAT."""
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[t.id for t in self.private_route_tables],
            tags=name_tag(f"{name}-s3"),
            opts=self._opts(),
        )

    def _flow_logs(self, name: str, cfg: NetworkConfig, account_id: pulumi.Input[str]) -> aws.ec2.FlowLog:
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/aws/vpc/{name}/flow-logs",
            retention_in_days=cfg.flow_log_retention_days,
            opts=self._opts(),
        )
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=pulumi.Output.from_input(account_id).apply(iam.flow_logs_trust_policy),
            opts=self._opts(),
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=log_group.arn.apply(iam.flow_logs_policy),
            opts=self._opts(),
        )
        return aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=name_tag(f"{name}-flow-logs"),
            opts=self._opts(),
        )
