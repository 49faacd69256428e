"""`AwsComponent`: what every AWS-layer component shares - its type token, and children that are
parented to it and created through the stack's one explicit AWS provider."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import pulumi
import pulumi_aws as aws

from infra.aws import iam


class AwsComponent(pulumi.ComponentResource):
    TYPE: ClassVar[str]

    def __init__(self, name: str, provider: aws.Provider, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(
            self.TYPE,
            name,
            None,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers=[provider])),
        )
        self._provider = provider

    def _opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for a child resource: parented here, through the explicit provider."""
        return pulumi.ResourceOptions(parent=self, provider=self._provider, **kwargs)

    def _attach_managed(
        self, logical: str, role: aws.iam.Role, policies: Sequence[str], partition: pulumi.Output[str]
    ) -> list[aws.iam.RolePolicyAttachment]:
        """AWS-managed policies (by name) on `role`, one attachment each, named `<logical>-<policy>`."""
        return [
            aws.iam.RolePolicyAttachment(
                f"{logical}-{policy}",
                role=role.name,
                policy_arn=partition.apply(lambda p, n=policy: iam.managed_policy_arn(p, n)),
                opts=self._opts(),
            )
            for policy in policies
        ]

    def _invoke(self) -> pulumi.InvokeOutputOptions:
        return pulumi.InvokeOutputOptions(parent=self, provider=self._provider)
