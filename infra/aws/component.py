"""`AwsComponent`: what every AWS-layer component shares - its type token, and children that are
parented to it and created through the stack's one explicit AWS provider."""

from __future__ import annotations

from typing import Any, ClassVar

import pulumi
import pulumi_aws as aws


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

    def _invoke(self) -> pulumi.InvokeOutputOptions:
        return pulumi.InvokeOutputOptions(parent=self, provider=self._provider)
