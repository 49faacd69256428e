"""`ClusterAutoscaler`: IRSA role + tag-scoped IAM policy + the cluster-autoscaler Helm release.

Inputs are plain values and Outputs (cluster name, OIDC provider, node group names) so the component
does not depend on how the EKS layer is built. Documents and values come from `infra.k8s_ca`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.aws import iam
from infra.config.settings import AutoscalerSettings
from infra.k8s import ca as k8s_ca


class ClusterAutoscaler(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]
    release_name: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: AutoscalerSettings,
        *,
        cluster_name: pulumi.Input[str],
        cluster_arn: pulumi.Input[str],
        region: str,
        oidc_provider_arn: pulumi.Input[str],
        oidc_issuer_url: pulumi.Input[str],
        worker_node_groups: Sequence[tuple[pulumi.Input[str], str]],
        k8s_provider: k8s.Provider,
        aws_provider: aws.Provider,
        depends_on: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`worker_node_groups`: (EKS node group name, capacity type) of every autoscaled group;
        `depends_on`: what must exist before the release (e.g. the system node group it runs on)."""
        super().__init__("adaptive-dask:kubernetes:ClusterAutoscaler", name, None, opts)
        aws_opts = pulumi.ResourceOptions(parent=self, provider=aws_provider)

        trust = pulumi.Output.all(oidc_provider_arn, oidc_issuer_url).apply(
            lambda v: json.dumps(iam.irsa_trust_policy(v[0], v[1], k8s_ca.NAMESPACE, k8s_ca.SERVICE_ACCOUNT))
        )
        role = aws.iam.Role(
            f"{name}-irsa",
            assume_role_policy=trust,
            description="cluster-autoscaler (IRSA, kube-system/cluster-autoscaler only)",
            opts=aws_opts,
        )
        policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=pulumi.Output.from_input(cluster_arn).apply(
                lambda arn: json.dumps(k8s_ca.autoscaler_policy(arn))
            ),
            opts=aws_opts,
        )

        group_names = [group for group, _ in worker_node_groups]
        capacity = [kind for _, kind in worker_node_groups]
        values = pulumi.Output.all(cluster_name, role.arn, *group_names).apply(
            lambda v: k8s_ca.helm_values(
                cluster_name=v[0],
                region=region,
                kubernetes_version=settings.kubernetes_version,
                role_arn=v[1],
                flags=settings.flags,
                priorities=(
                    k8s_ca.expander_priorities(
                        [k8s_ca.NodeGroupRef(n, c) for n, c in zip(v[2:], capacity, strict=True)]
                    )
                    if "priority" in settings.expander
                    else None
                ),
            )
        )
        release = k8s.helm.v3.Release(
            f"{name}-release",
            name=k8s_ca.RELEASE_NAME,
            chart=k8s_ca.CHART,
            version=k8s_ca.CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=k8s_ca.CHART_REPO),
            namespace=k8s_ca.NAMESPACE,
            values=values,
            atomic=True,
            cleanup_on_fail=True,
            timeout=600,
            # CA must find its permissions in place when it first starts.
            opts=pulumi.ResourceOptions(parent=self, provider=k8s_provider, depends_on=[policy, *depends_on]),
        )
        self.role_arn = role.arn
        self.release_name = release.name
        self.register_outputs({"roleArn": self.role_arn, "releaseName": self.release_name})
