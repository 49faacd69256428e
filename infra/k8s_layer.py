"""The Kubernetes layer, composed for the stack's target; `infra/program.py` plugs it in.

`load()` runs right after the stack config is read, so this layer's keys are validated before any
resource is registered; `build()` then creates cluster-autoscaler (aws) and the Dask cluster (aws and
local) with an explicit Kubernetes provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
import pulumi_kubernetes as k8s

from infra.autoscaler import ClusterAutoscaler
from infra.config import Settings
from infra.dask import DaskCluster
from infra.dask_config import ClusterFacts, LayerSettings, WorkerGroupFacts, load_layer_config
from infra.k8s_placement import WORKER_TAINT, Taint

if TYPE_CHECKING:  # program.py imports this module
    from infra.program import AwsPlatform


def cluster_facts(settings: Settings) -> ClusterFacts | None:
    """What this layer needs to know from the AWS layer's config (None for the local target)."""
    if settings.aws is None:
        return None
    groups = tuple(
        WorkerGroupFacts(
            name=g.name,
            instance_types=tuple(g.instance_types),
            capacity_type=g.capacity_type,
            max_size=g.max_size,
            disk_gib=g.disk_gib,
            taints=tuple(Taint(t.key, t.value, t.effect) for t in g.taints if t.key != WORKER_TAINT.key),
            key=f"{settings.project}:workerGroups[{i}]",
        )
        for i, g in enumerate(settings.aws.workers)
    )
    return ClusterFacts(
        kubernetes_version=settings.aws.cluster.version,
        worker_groups=groups,
        system_instance_type=settings.aws.system.instance_type,
        kubernetes_version_key=f"{settings.project}:cluster.version",
    )


def load(settings: Settings) -> LayerSettings:
    return load_layer_config(
        target=settings.target, facts=cluster_facts(settings), default_namespace=settings.name
    )


def local_provider(name: str, context: str | None) -> k8s.Provider:
    """The cluster of the user's kubeconfig (`$KUBECONFIG` or ~/.kube/config), current or named context."""
    return k8s.Provider(f"{name}-k8s", context=context, enable_server_side_apply=True)


def build(settings: Settings, layer: LayerSettings, platform: AwsPlatform | None) -> DaskCluster:
    name = settings.name
    if settings.target == "aws":
        assert platform is not None and settings.aws is not None and layer.autoscaler is not None
        provider = platform.k8s_provider
        # Pods need nodes and, with the self-managed bootstrap addons off, cluster DNS (the coredns addon,
        # created once nodes exist): cluster-autoscaler resolves AWS endpoints, Dask resolves its Service.
        nodes = [*platform.node_groups.all_groups, platform.cluster.addons["coredns"]]
        autoscaler = ClusterAutoscaler(
            f"{name}-autoscaler",
            layer.autoscaler,
            cluster_name=platform.cluster.cluster_name,
            cluster_arn=platform.cluster.cluster.arn,
            region=platform.region,
            oidc_provider_arn=platform.cluster.oidc_provider_arn,
            oidc_issuer_url=platform.cluster.oidc_issuer,
            worker_node_groups=[
                (platform.node_groups.workers[g.name].node_group_name, g.capacity_type)
                for g in settings.aws.workers
            ],
            k8s_provider=provider,
            aws_provider=platform.aws_provider,
            depends_on=nodes,
        )
        pulumi.export("clusterAutoscalerRoleArn", autoscaler.role_arn)
    else:
        provider = local_provider(name, layer.kube_context)
        nodes = []
    dask = DaskCluster(f"{name}-dask", layer.dask, provider, depends_on=nodes)
    pulumi.export("daskNamespace", dask.namespace)
    pulumi.export("daskSchedulerAddress", dask.scheduler_address)
    pulumi.export("daskDashboard", dask.dashboard)
    pulumi.export("daskWorkerDeployment", dask.worker_deployment)
    pulumi.export("daskWorkerSelector", dask.worker_selector)
    return dask
