"""`ImageRepository`: the stack's own ECR repository for the team's Dask image (`images.repository`).

Immutable tags (a tag can never be re-pointed at other code: the stack deploys by digest anyway), scan
on push, KMS encryption, and a lifecycle policy that keeps the newest `keep_images` images so the
registry bill stays flat. The nodes pull through their role's AmazonEC2ContainerRegistryReadOnly.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.aws.component import AwsComponent
from infra.config.settings import ImagesConfig

IMAGE_NAME = "dask"


def lifecycle_policy(keep_images: int) -> str:
    """Expire all but the newest `keep_images` images (tagged or not: every push is a digest in use
    until a newer one replaces it in the stack files)."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"keep the newest {keep_images} images",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": keep_images,
                    },
                    "action": {"type": "expire"},
                }
            ]
        },
        sort_keys=True,
    )


def repository_name(stack_name: str) -> str:
    return f"{stack_name}/{IMAGE_NAME}"


class ImageRepository(AwsComponent):
    TYPE = "adaptive-dask:aws:ImageRepository"

    def __init__(
        self, name: str, config: ImagesConfig, provider: aws.Provider, protect: bool = False
    ) -> None:
        super().__init__(name, provider)
        self.repository = aws.ecr.Repository(
            f"{name}-repository",
            name=repository_name(name),
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS"}],
            force_delete=False,  # a destroy stops at a repository that still holds images
            opts=self._opts(protect=protect),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=self.repository.name,
            policy=lifecycle_policy(config.keep_images),
            opts=self._opts(),
        )
        self.url: pulumi.Output[str] = self.repository.repository_url
        self.register_outputs({"url": self.url})
