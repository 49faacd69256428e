"""`build()`: compose the layers from the config. `infra/__main__.py` only calls this.

Order: config (validated, nothing registered yet) -> explicit AWS provider with default tags -> live
facts read through it (zones, deployer, node group sizes; may still stop the run) -> Network -> EksCluster
-> NodeGroups -> node-dependent addons -> exports -> Kubernetes layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import k8s_layer
from infra.cluster import EksCluster, EksClusterArgs, log_group_name
from infra.config import AwsConfig, Settings, load_settings
from infra.live import deployer_entry_needed, read_live_facts
from infra.network import Network, NetworkArgs
from infra.nodegroups import NodeGroups, NodeGroupsArgs
from infra.pools import WorkerPool, system_node_selector, worker_pool


@dataclass(frozen=True)
class AwsPlatform:
    """Everything the Kubernetes layer needs from the AWS layer."""

    settings: Settings
    aws_provider: aws.Provider
    network: Network
    cluster: EksCluster
    node_groups: NodeGroups
    worker_pools: tuple[WorkerPool, ...]

    @property
    def k8s_provider(self) -> k8s.Provider:
        return self.cluster.k8s_provider

    @property
    def region(self) -> str:
        return self._aws.region

    @property
    def cluster_version(self) -> str:
        return self.cluster.version

    @property
    def system_node_selector(self) -> dict[str, str]:
        return system_node_selector()

    @property
    def _aws(self) -> AwsConfig:
        assert self.settings.aws is not None
        return self.settings.aws


def build_aws(settings: Settings) -> AwsPlatform:
    """The AWS layer: VPC, EKS, node groups. Every resource uses this one explicit provider."""
    cfg = settings.aws
    assert cfg is not None, "build_aws needs target=aws"
    name = settings.name
    provider = aws.Provider(f"{name}-aws", region=cfg.region, default_tags={"tags": dict(settings.tags)})
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    caller = aws.get_caller_identity_output(opts=invoke)
    partition = aws.get_partition_output(opts=invoke).partition
    live = read_live_facts(settings, provider, log_group_name(name))
    deployer_entry = deployer_entry_needed(
        live.deployer_arn, cfg.cluster.deployer_admin, cfg.cluster.admin_arns
    )

    network = Network(
        name,
        NetworkArgs(
            config=cfg.network,
            zones=live.zones,
            cluster_name=name,
            region=cfg.region,
            account_id=caller.account_id,
        ),
        provider,
    )
    cluster = EksCluster(
        name,
        EksClusterArgs(
            config=cfg.cluster,
            cluster_name=name,
            region=cfg.region,
            subnet_ids=network.private_subnet_ids,
            partition=partition,
            deployer_arn=live.deployer_arn if deployer_entry else None,
            production=settings.production,
        ),
        provider,
    )
    node_groups = NodeGroups(
        name,
        NodeGroupsArgs(
            cluster_name=cluster.cluster_name,
            cluster_version=cluster.version,
            subnet_ids=network.private_subnet_ids,
            partition=partition,
            system=cfg.system,
            workers=cfg.workers,
            tags=settings.tags,
            live_node_groups=live.node_groups,
            ami_release_version=cfg.cluster.node_ami_release_version,
            depends_on=cluster.pre_node_addons,
        ),
        provider,
    )
    cluster.add_node_dependent_addons(node_groups.all_groups)
    return AwsPlatform(
        settings=settings,
        aws_provider=provider,
        network=network,
        cluster=cluster,
        node_groups=node_groups,
        worker_pools=tuple(worker_pool(g) for g in cfg.workers),
    )


def export_aws(platform: AwsPlatform) -> None:
    net, cluster, groups = platform.network, platform.cluster, platform.node_groups
    pulumi.export("region", platform.region)
    pulumi.export("vpcId", net.vpc_id)
    pulumi.export("publicSubnetIds", net.public_subnet_ids)
    pulumi.export("privateSubnetIds", net.private_subnet_ids)
    pulumi.export("clusterName", cluster.cluster_name)
    pulumi.export("clusterEndpoint", cluster.endpoint)
    pulumi.export("clusterVersion", cluster.version)
    pulumi.export("kubeconfig", cluster.kubeconfig)  # secret
    pulumi.export("oidcProviderArn", cluster.oidc_provider_arn)
    pulumi.export("oidcIssuer", cluster.oidc_issuer)
    pulumi.export("nodeGroupNames", groups.node_group_names)
    pulumi.export("asgNames", groups.asg_names)


def build() -> AwsPlatform | None:
    """The whole program. Config is read and validated first, so a bad value registers nothing."""
    settings = load_settings()
    kubernetes_layer = k8s_layer.load(settings)  # its keys too are validated before any resource
    platform: AwsPlatform | None = None
    if settings.target == "aws":
        platform = build_aws(settings)
        export_aws(platform)
    # ---- Kubernetes layer goes here (single plug-in point) ----------------------------------------
    # target=aws:   construct the Kubernetes-layer components with platform.k8s_provider,
    #               platform.worker_pools (labels / tolerations / instance types per pool),
    #               platform.system_node_selector, platform.cluster_version,
    #               platform.cluster.oidc_provider_arn / .oidc_issuer, platform.region and
    #               platform.cluster.cluster_name; pass depends_on=platform.node_groups.all_groups where
    #               pods must have nodes.
    # target=local: no AWS resources exist; the Kubernetes layer brings its own provider.
    k8s_layer.build(settings, kubernetes_layer, platform)
    return platform
