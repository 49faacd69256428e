"""The notebook's home on EKS (issue 23 §1, infra/aws/storage.py) under the program's mocks: the
`aws-ebs-csi-driver` addon with its own Pod Identity role (exact trust, exactly the managed policy), the Pod
Identity agent it needs, the encrypted gp3 StorageClass, and none of it unless the notebook is on aws."""

from __future__ import annotations

import json

import pytest

from infra.aws import iam, storage
from infra.config.jupyter import AWS_STORAGE_CLASS
from infra.facts.placement import WORKER_TAINT, tolerations
from testbed.infra import builders
from testbed.infra.harness import Graph

ADDON = "aws:eks/addon:Addon"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
EBS, AGENT = "aws-ebs-csi-driver", "eks-pod-identity-agent"


def addon(g: Graph, name: str):
    found = [a for a in g.of_type(ADDON) if a.inputs["addonName"] == name]
    return found[0] if found else None


@pytest.fixture
def dev(stack_graph) -> Graph:
    """dev with the notebook on (the committed stack has it off): the team's image, dev's own sizes."""
    return stack_graph("dev", overrides=builders.jupyter_overrides("dev", **builders.DEV_NOTEBOOK))


def test_the_driver_has_its_own_pod_identity_role_with_exactly_the_managed_policy(dev):
    driver = addon(dev, EBS)
    [association] = driver.inputs["podIdentityAssociations"]
    assert association["serviceAccount"] == storage.EBS_CSI_SERVICE_ACCOUNT == "ebs-csi-controller-sa"
    [role] = [r for r in dev.of_type(ROLE) if r.state.get("arn") == association["roleArn"]]
    assert json.loads(role.inputs["assumeRolePolicy"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            }
        ],
    }
    attached = [
        a.inputs["policyArn"] for a in dev.of_type(ATTACHMENT) if a.inputs["role"] == role.state["name"]
    ]
    assert attached == ["arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"]
    assert "serviceAccountRoleArn" not in driver.inputs  # Pod Identity, not IRSA
    assert dev.exports["ebsCsiDriverRoleArn"] == role.state["arn"]


def test_the_addon_waits_for_nodes_the_agent_and_its_policy(dev):
    driver = addon(dev, EBS)
    assert dev.depends_on(driver, addon(dev, AGENT))
    [attachment] = [a for a in dev.of_type(ATTACHMENT) if "EBSCSI" in a.inputs["policyArn"]]
    assert dev.depends_on(driver, attachment)
    for group in dev.of_type("aws:eks/nodeGroup:NodeGroup"):  # their pods need nodes, like coredns
        assert dev.depends_on(driver, group) and dev.depends_on(addon(dev, AGENT), group)
    # it follows the cluster's version like the others (dev tracks `latest`: no pin)
    assert driver.inputs["addonVersion"].endswith(f"-{EBS}-eksbuild.1")


def test_the_node_plugin_runs_only_where_the_notebook_may(dev, stack_graph):
    assert json.loads(addon(dev, EBS).inputs["configurationValues"]) == {"node": {"tolerateAllTaints": False}}
    g = stack_graph("dev", overrides=builders.jupyter_overrides("dev", nodeGroup="spot"))
    node = json.loads(addon(g, EBS).inputs["configurationValues"])["node"]
    assert node == {"tolerateAllTaints": False, "tolerations": tolerations((WORKER_TAINT,))}


def test_the_storage_class_is_encrypted_gp3_bound_at_first_consumer(dev):
    [sc] = dev.of_type(STORAGE_CLASS)
    assert sc.inputs["metadata"]["name"] == AWS_STORAGE_CLASS
    assert sc.inputs["provisioner"] == "ebs.csi.aws.com"
    params = sc.inputs["parameters"]
    assert (params["type"], params["encrypted"]) == ("gp3", "true")
    assert "kmsKeyId" not in params  # the account's default EBS key (module docstring)
    assert sc.inputs["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc.inputs["allowVolumeExpansion"] is True
    assert sc.inputs["reclaimPolicy"] == "Delete"  # not production
    assert "storageclass.kubernetes.io/is-default-class" not in json.dumps(sc.inputs)
    assert dev.depends_on(sc, addon(dev, EBS))
    # the stack's cost tags reach the volumes (provider default tags do not)
    tags = {v.split("=", 1)[0] for k, v in params.items() if k.startswith("tagSpecification_")}
    assert {"Project", "Stack", "ManagedBy", "Environment", "Owner"} <= tags


def test_production_retains_the_volume():
    assert storage.storage_class(True, {})["reclaimPolicy"] == "Retain"
    assert storage.storage_class(False, {})["reclaimPolicy"] == "Delete"


def test_production_with_the_notebook_pins_and_retains(stack_graph):
    overrides = builders.jupyter_overrides("prod")
    assert json.loads(overrides["adaptive-dask:cluster"])["addonVersions"][EBS] == "v1.50.1-eksbuild.1"
    g = stack_graph("prod", overrides=overrides)
    assert addon(g, EBS).inputs["addonVersion"] == "v1.50.1-eksbuild.1"
    assert addon(g, AGENT).inputs["addonVersion"] == "v1.3.9-eksbuild.3"
    [sc] = g.of_type(STORAGE_CLASS)
    assert sc.inputs["reclaimPolicy"] == "Retain"


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_nothing_without_the_notebook(stack_graph, stack):
    g = stack_graph(stack)
    assert addon(g, EBS) is None and g.of_type(STORAGE_CLASS) == []
    assert "ebsCsiDriverRoleArn" not in g.exports


def test_the_local_target_makes_no_aws_resource_for_it(stack_graph):
    g = stack_graph("local", overrides=builders.jupyter_overrides("local"))
    assert [n for n in g.nodes if n.type.startswith("aws:")] == []
    assert g.of_type(STORAGE_CLASS) == [] and g.of_type("kubernetes:core/v1:PersistentVolumeClaim")


def test_the_managed_policy_name_keeps_its_path():
    assert iam.managed_policy_arn("aws-cn", storage.EBS_CSI_POLICIES[0]) == (
        "arn:aws-cn:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
    )
