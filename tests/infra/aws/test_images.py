"""Issue 22 §2: the stack's ECR repository for the team's image (`adaptive-dask:images`)."""

from __future__ import annotations

import json

import pytest

from infra.aws.images import lifecycle_policy, repository_name
from infra.config.load import load_settings
from infra.errors import ConfigError
from testbed.infra.harness import Graph, install, run_program

NS = "adaptive-dask"
REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
WITH_REPOSITORY = {f"{NS}:images": json.dumps({"repository": True, "keepImages": 12})}


def test_the_repository_is_immutable_scanned_encrypted_and_trimmed(stack_graph) -> None:
    g: Graph = stack_graph("dev", overrides=WITH_REPOSITORY)
    [repo] = g.of_type(REPOSITORY)
    assert repo.inputs["name"] == repository_name("adask-dev") == "adask-dev/dask"
    assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
    assert not repo.inputs.get("forceDelete")
    [policy] = g.of_type(LIFECYCLE)
    assert policy.inputs["repository"] == repo.inputs["name"]
    [rule] = json.loads(policy.inputs["policy"])["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 12}
    assert g.exports["imageRepositoryUrl"] == repo.state["repositoryUrl"]
    assert g.exports["imageRepositoryUrl"].endswith(".amazonaws.com/adask-dev/dask")


def test_no_repository_unless_asked(stack_graph) -> None:
    g = stack_graph("dev")
    assert g.of_type(REPOSITORY) == [] and "imageRepositoryUrl" not in g.exports


def test_production_protects_the_repository(stack_graph) -> None:
    [repo] = stack_graph("prod", overrides=WITH_REPOSITORY).of_type(REPOSITORY)
    assert repo.protect is True


def test_lifecycle_policy_document() -> None:
    assert json.loads(lifecycle_policy(3))["rules"][0]["selection"]["countNumber"] == 3


@pytest.mark.parametrize(
    ("config", "key", "allowed"),
    [
        ({f"{NS}:images": json.dumps({"repository": "yes"})}, "images.repository", "true or false"),
        ({f"{NS}:images": json.dumps({"keepImages": 0})}, "images.keepImages", "between 1 and 1000"),
        ({f"{NS}:images": json.dumps({"registry": "x"})}, "images.registry", "unknown field"),
        ({f"{NS}:images": json.dumps({"repository": True}), f"{NS}:target": "local"}, "images", "target aws"),
    ],
)
def test_bad_images_config_is_refused(config: dict[str, str], key: str, allowed: str) -> None:
    install(stack="test", config=config)
    with pytest.raises(ConfigError) as caught:
        run_program(load_settings)
    assert caught.value.key == f"{NS}:{key}" and allowed in caught.value.allowed


TEAM_IMAGE = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/adask-prod/dask"
DIGEST = "sha256:" + "ab" * 32


def prod_with_image(image: str) -> dict[str, str]:
    from testbed.infra.builders import prod

    return {**prod(), f"{NS}:target": "aws", f"{NS}:dask": json.dumps({"image": image})}


def test_production_runs_a_team_image_only_by_digest() -> None:
    install(stack="test", config=prod_with_image(f"{TEAM_IMAGE}:v3"))
    with pytest.raises(ConfigError) as caught:
        run_program(load_settings)
    assert caught.value.key == f"{NS}:dask.image" and "pinned by digest" in caught.value.allowed
    install(stack="test", config=prod_with_image(f"{TEAM_IMAGE}@{DIGEST}"))
    assert run_program(load_settings).dask.image == f"{TEAM_IMAGE}@{DIGEST}"
    install(stack="test", config={f"{NS}:dask": json.dumps({"image": f"{TEAM_IMAGE}:v3"})})
    assert run_program(load_settings).dask.image.endswith(":v3")  # outside production a tag will do
