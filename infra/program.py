"""`build()`: compose the layers from the config. `infra/__main__.py` only calls this.

Order: config (validated, nothing registered yet) -> explicit AWS provider with default tags -> live
facts read through it (zones, deployer, node group sizes; may still stop the run) -> Network -> EksCluster
-> NodeGroups -> node-dependent addons -> ClusterAutoscaler, the workers' data role (when asked) and
DaskCluster on the cluster's provider.
For the `local` target only the Dask layer is built, on the user's kubeconfig.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.aws.budget import CostBudget
from infra.aws.cluster import EksCluster, EksClusterArgs, log_group_name
from infra.aws.data_access import WorkerDataRole, WorkerDataRoleArgs
from infra.aws.images import ImageRepository
from infra.aws.live import deployer_entry_needed, read_live_facts
from infra.aws.network import Network, NetworkArgs
from infra.aws.nodegroups import NodeGroups, NodeGroupsArgs
from infra.aws.storage import EbsCsiDriver, EbsCsiDriverArgs, storage_class
from infra.config.aws import POD_IDENTITY_AGENT
from infra.config.load import load_settings
from infra.config.settings import AwsConfig, Settings
from infra.k8s.autoscaler import ClusterAutoscaler
from infra.k8s.dask import DaskCluster
from infra.k8s.dask_objects import Names
from infra.k8s.live import check_local_cluster
from infra.k8s.objects import create


@dataclass(frozen=True)
class AwsLayer:
    """The AWS layer's components, handed to the Kubernetes layer."""

    provider: aws.Provider
    network: Network
    cluster: EksCluster
    node_groups: NodeGroups
    partition: pulumi.Output[str]


def build_aws(settings: Settings, cfg: AwsConfig) -> AwsLayer:
    """VPC, EKS, node groups. Every resource uses this one explicit provider."""
    name = settings.name
    provider = aws.Provider(f"{name}-aws", region=cfg.region, default_tags={"tags": dict(settings.tags)})
    invoke = pulumi.InvokeOutputOptions(provider=provider)
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
            account_id=live.account_id,
            protect=settings.production,
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
    pod_identity = settings.dask.data_access.role_needed or settings.dask.jupyter.enabled
    optional = (POD_IDENTITY_AGENT,) if pod_identity else ()
    cluster.add_node_dependent_addons(node_groups.all_groups, optional)
    return AwsLayer(
        provider=provider, network=network, cluster=cluster, node_groups=node_groups, partition=partition
    )


def export_aws(cfg: AwsConfig, layer: AwsLayer) -> None:
    net, cluster, groups = layer.network, layer.cluster, layer.node_groups
    pulumi.export("region", cfg.region)
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


def build_autoscaler(
    settings: Settings, cfg: AwsConfig, layer: AwsLayer, ready: list[pulumi.Resource]
) -> None:
    assert settings.autoscaler is not None
    cluster = layer.cluster
    autoscaler = ClusterAutoscaler(
        f"{settings.name}-autoscaler",
        settings.autoscaler,
        cluster_name=cluster.cluster_name,
        cluster_arn=cluster.cluster.arn,
        region=cfg.region,
        oidc_provider_arn=cluster.oidc_provider_arn,
        oidc_issuer_url=cluster.oidc_issuer,
        worker_node_groups=[
            (layer.node_groups.workers[g.name].node_group_name, g.capacity_type) for g in cfg.workers
        ],
        k8s_provider=cluster.k8s_provider,
        aws_provider=layer.provider,
        depends_on=ready,
    )
    pulumi.export("clusterAutoscalerRoleArn", autoscaler.role_arn)


def build_budget(settings: Settings, layer: AwsLayer) -> CostBudget | None:
    """The stack's monthly AWS Budget on its `Stack` tag, when `budget` is set (docs/cost.md)."""
    if settings.budget is None:
        if settings.production:
            pulumi.log.warn(
                "adaptive-dask:budget is not set: nothing alerts before the bill does "
                "(docs/cost.md#seeing-the-bill)"
            )
        return None
    budget = CostBudget(settings.name, settings.stack, settings.budget, layer.provider)
    pulumi.export("budgetName", budget.name)
    return budget


def build_worker_data_role(settings: Settings, layer: AwsLayer) -> WorkerDataRole | None:
    """The workers' Pod Identity role, when the stack names data buckets or extra policies."""
    assert settings.aws is not None
    access = settings.dask.data_access
    if not access.role_needed:
        return None
    cluster = layer.cluster
    role = WorkerDataRole(
        f"{settings.name}-worker-data",
        WorkerDataRoleArgs(
            access=access,
            cluster_name=cluster.cluster_name,
            namespace=settings.dask.namespace,
            service_account=Names.of(settings.dask).worker,
            region=settings.aws.region,
            partition=layer.partition,
            depends_on=[cluster.addons[POD_IDENTITY_AGENT]],
        ),
        layer.provider,
    )
    pulumi.export("workerDataRoleArn", role.role_arn)
    return role


def build_notebook_storage(settings: Settings, layer: AwsLayer) -> list[pulumi.Resource]:
    """The notebook's home on EKS (infra/aws/storage.py), when `dask.jupyter` is enabled: the EBS CSI
    driver with its Pod Identity role, and the encrypted gp3 StorageClass; what its volume waits for."""
    if not settings.dask.jupyter.enabled:
        return []
    cluster = layer.cluster
    driver = EbsCsiDriver(
        f"{settings.name}-ebs-csi",
        EbsCsiDriverArgs(
            jupyter=settings.dask.jupyter,
            cluster=cluster,
            partition=layer.partition,
            depends_on=[*layer.node_groups.all_groups, cluster.addons[POD_IDENTITY_AGENT]],
        ),
        layer.provider,
    )
    storage = create(
        f"{settings.name}-notebook-storage-class",
        storage_class(settings.production, settings.tags),
        pulumi.ResourceOptions(parent=driver, provider=cluster.k8s_provider, depends_on=[driver.addon]),
    )
    pulumi.export("ebsCsiDriverRoleArn", driver.role_arn)
    return [driver.addon, storage]


def build_dask(
    settings: Settings,
    provider: k8s.Provider,
    ready: list[pulumi.Resource],
    notebook_ready: list[pulumi.Resource] | None = None,
) -> DaskCluster:
    dask = DaskCluster(
        f"{settings.name}-dask",
        settings.dask,
        provider,
        depends_on=ready,
        notebook_depends_on=notebook_ready or [],
    )
    pulumi.export("daskNamespace", dask.namespace)
    pulumi.export("daskSchedulerAddress", dask.scheduler_address)
    pulumi.export("daskDashboard", dask.dashboard)
    pulumi.export("daskWorkerDeployment", dask.worker_deployment)
    pulumi.export("daskWorkerSelector", dask.worker_selector)
    pulumi.export("daskClientSetup", dask.client_setup)
    if dask.jupyter_setup is not None:
        pulumi.export("jupyterSetup", dask.jupyter_setup)
    return dask


def local_provider(name: str, context: str | None) -> k8s.Provider:
    """The cluster of the user's kubeconfig (`$KUBECONFIG` or ~/.kube/config), current or named context."""
    return k8s.Provider(f"{name}-k8s", context=context, enable_server_side_apply=True)


def build() -> AwsLayer | None:
    """The whole program. Config is read and validated first, so a bad value registers nothing."""
    settings = load_settings()
    if settings.aws is None:
        check_local_cluster(settings)  # facts of the user's cluster, before anything is registered
        build_dask(settings, local_provider(settings.name, settings.kube_context), [])
        return None
    layer = build_aws(settings, settings.aws)
    export_aws(settings.aws, layer)
    build_budget(settings, layer)
    if settings.aws.images.repository:
        images = ImageRepository(
            settings.name, settings.aws.images, layer.provider, protect=settings.production
        )
        pulumi.export("imageRepositoryUrl", images.url)
    # Pods need nodes and, with the self-managed bootstrap addons off, cluster DNS (the coredns addon,
    # created once nodes exist): cluster-autoscaler resolves AWS endpoints, Dask resolves its Service.
    ready = [*layer.node_groups.all_groups, layer.cluster.addons["coredns"]]
    build_autoscaler(settings, settings.aws, layer, ready)
    data_role = build_worker_data_role(settings, layer)
    # Pod Identity credentials reach only pods created after the association: the Dask layer waits for it.
    identity = [data_role.association] if data_role else []
    notebook_ready = build_notebook_storage(settings, layer)
    build_dask(settings, layer.cluster.k8s_provider, [*ready, *identity], notebook_ready)
    return layer
