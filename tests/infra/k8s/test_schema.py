"""Every Kubernetes object of the Dask layer against the Kubernetes OpenAPI schema (kubernetes-validate).

The check itself is `schema_errors()` of tests/infra/schema.py (strict: an unknown field such as
`nodeSelecter` is an error), which the component and program tests also run on the objects the program
actually registered.
"""

from __future__ import annotations

import json

import pytest

from infra.config.settings import DaskSettings
from infra.facts.versions import CA_IMAGE_TAGS
from infra.k8s import dask_objects as kd
from infra.k8s import preload as kp
from infra.k8s import rbac, services
from testbed.infra import builders
from tests.infra.schema import schema_errors


def all_manifests(settings: DaskSettings) -> list[dict]:
    names = kd.Names(settings.namespace)
    files = kp.collect()
    digest = kp.content_hash(files)
    v = settings.dask_version
    return [
        kd.namespace(names, v),
        rbac.service_account(names.scheduler, names, "scheduler", v, automount=True),
        rbac.service_account(names.worker, names, "worker", v, automount=False),
        rbac.role(names, v),
        rbac.role_binding(names, v),
        kd.preload_configmap(names, v, files),
        kd.scheduler_deployment(settings, names, files, digest),
        kd.worker_deployment(settings, names, files, digest),
        services.scheduler_service(names, v),
        services.dashboard_service(names, v, ("10.0.0.0/8",), settings.target),
    ]


def aws_settings() -> DaskSettings:
    cluster = builders.aws(
        (
            builders.group("spot", ("m6i.2xlarge",), "SPOT", 10, 100),
            builders.group("od", ("m6i.2xlarge",), "ON_DEMAND", 2, 100),
        ),
        system_instance_type="m6i.large",
    )
    return builders.dask(
        json.dumps({"workersPerNode": 2}), target="aws", cluster=cluster, namespace="adask-prod"
    )


def local_settings() -> DaskSettings:
    return builders.dask(None, target="local", namespace="adask-local")


@pytest.mark.parametrize("minor", sorted(CA_IMAGE_TAGS))
def test_every_object_is_valid_for_every_supported_minor(minor):
    for settings in (aws_settings(), local_settings()):
        errors = [e for m in all_manifests(settings) for e in schema_errors(m, minor)]
        assert errors == []


def test_the_validator_does_catch_a_typo_and_a_wrong_type():
    deployment = all_manifests(local_settings())[6]
    deployment["spec"]["template"]["spec"]["nodeSelecter"] = {"a": "b"}
    assert schema_errors(deployment, "1.35")
    deployment = all_manifests(local_settings())[6]
    deployment["spec"]["replicas"] = "one"
    assert schema_errors(deployment, "1.35")
