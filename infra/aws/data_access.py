"""`WorkerDataRole`: the Dask workers' own AWS identity, through EKS Pod Identity.

The role trusts `pods.eks.amazonaws.com`, and one `PodIdentityAssociation` binds it to exactly the
workers' ServiceAccount in the Dask namespace: the scheduler (another ServiceAccount) gets no data
role, and neither does any other pod. Its policy names the configured buckets and prefixes only
(iam.py `data_access_policy`); extra managed policies are attached only when listed.

EKS's Pod Identity webhook injects the credentials into pods created after the association exists, so
the Dask layer (and with it every worker pod) waits for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws import iam
from infra.aws.component import AwsComponent
from infra.config.data_access import DataAccess


@dataclass(frozen=True)
class WorkerDataRoleArgs:
    access: DataAccess
    cluster_name: pulumi.Input[str]
    namespace: str
    service_account: str
    region: str
    partition: pulumi.Input[str]
    depends_on: Sequence[pulumi.Resource] = ()  # the Pod Identity agent addon


class WorkerDataRole(AwsComponent):
    TYPE = "adaptive-dask:aws:WorkerDataRole"

    def __init__(self, name: str, args: WorkerDataRoleArgs, provider: aws.Provider) -> None:
        super().__init__(name, provider)
        access = args.access
        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=iam.pod_identity_trust_policy(),
            description=f"Dask workers' data access (Pod Identity: {args.namespace}/{args.service_account})",
            opts=self._opts(),
        )
        attached: list[pulumi.Resource] = []
        if access.buckets:
            attached.append(
                aws.iam.RolePolicy(
                    f"{name}-buckets",
                    role=self.role.name,
                    policy=pulumi.Output.from_input(args.partition).apply(
                        lambda p: iam.data_access_policy(p, args.region, access.buckets, access.kms_key_arns)
                    ),
                    opts=self._opts(),
                )
            )
        for i, arn in enumerate(access.policy_arns):
            attached.append(
                aws.iam.RolePolicyAttachment(
                    f"{name}-extra-{i}", role=self.role.name, policy_arn=arn, opts=self._opts()
                )
            )
        self.association = aws.eks.PodIdentityAssociation(
            f"{name}-association",
            cluster_name=args.cluster_name,
            namespace=args.namespace,
            service_account=args.service_account,
            role_arn=self.role.arn,
            opts=self._opts(depends_on=[*args.depends_on, *attached]),
        )
        self.role_arn: pulumi.Output[str] = self.role.arn
        self.register_outputs({"roleArn": self.role_arn})
