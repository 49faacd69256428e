"""Each guardrail on good and bad inputs, called exactly as the engine calls it (policy.validate)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from adaptive_dask_policy import PACK_NAME, RULE_NAMES, STRICT_CONFIG_KEY, build_policies, is_strict
from adaptive_dask_policy.checks import iam_document_violations
from adaptive_dask_policy.props import ignores
from pulumi_policy import EnforcementLevel
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from tests.policy.packrun import Res, resource_args, run_pack, stack_args

ROOT = Path(__file__).resolve().parents[2]
POLICIES = {p.name: p for p in build_policies(strict=True)}


def check(policy: str, typ: str, props: dict, ignore_changes: tuple[str, ...] = ()) -> list[str]:
    found: list[str] = []
    res = Res(typ, "r", props, ignore_changes=list(ignore_changes))
    POLICIES[policy].validate(resource_args(res), lambda m, u=None: found.append(m))
    return found


def check_stack(policy: str, resources: list[Res]) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    POLICIES[policy].validate(stack_args(resources), lambda m, u=None: found.append((m, u)))
    return found


# --- IMDSv2 / launch templates ----------------------------------------------------------------

LT = "aws:ec2/launchTemplate:LaunchTemplate"


def test_imdsv2_required_passes():
    assert (
        check(
            "imdsv2-required", LT, {"metadataOptions": {"httpTokens": "required", "httpEndpoint": "enabled"}}
        )
        == []
    )
    assert check("imdsv2-required", LT, {"metadataOptions": {"httpEndpoint": "disabled"}}) == []


@pytest.mark.parametrize(
    "props", [{}, {"metadataOptions": {"httpTokens": "optional"}}, {"metadataOptions": {}}]
)
def test_imdsv2_missing_or_optional_fails(props):
    (msg,) = check("imdsv2-required", LT, props)
    assert "httpTokens" in msg


def test_launch_template_public_ip_fails():
    props = {
        "metadataOptions": {"httpTokens": "required"},
        "networkInterfaces": [{"associatePublicIpAddress": "true"}],
    }
    assert check("imdsv2-required", LT, props) == [
        "networkInterfaces[0].associatePublicIpAddress is true; nodes must stay private"
    ]


def test_node_group_must_bring_its_launch_template():
    ng = "aws:eks/nodeGroup:NodeGroup"
    assert check("imdsv2-required", ng, {"launchTemplate": {"id": "lt-1", "version": "1"}}) == []
    assert check("imdsv2-required", ng, {"launchTemplate": {"name": "nodes", "version": "$Latest"}}) == []
    (msg,) = check("imdsv2-required", ng, {"instanceTypes": ["m6i.large"]})
    assert "launchTemplate" in msg


@pytest.mark.parametrize("limit", [1, 1.0, "1"])
def test_imds_hop_limit_one_passes(limit):
    props = {"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": limit}}
    assert check("imds-hop-limit-one", LT, props) == []
    assert check("imds-hop-limit-one", LT, {"metadataOptions": {"httpEndpoint": "disabled"}}) == []


@pytest.mark.parametrize(
    "meta",
    [
        {"httpTokens": "required", "httpPutResponseHopLimit": 2},
        {"httpTokens": "required", "httpPutResponseHopLimit": 1.5},
        {"httpTokens": "required", "httpPutResponseHopLimit": "two"},
        {"httpTokens": "required"},  # unset: the AMI's default (2 on AL2023 EKS AMIs)
        None,
    ],
)
def test_imds_hop_limit_other_or_unset_fails(meta):
    (msg,) = check("imds-hop-limit-one", LT, {"metadataOptions": meta} if meta else {})
    assert msg.startswith("metadataOptions.httpPutResponseHopLimit is ") and "set it to 1" in msg
    assert check("imds-hop-limit-one", "aws:ec2/instance:Instance", {}) == []


def test_imdsv2_ignores_other_types():
    assert check("imdsv2-required", "aws:ec2/instance:Instance", {}) == []


# --- node subnets -----------------------------------------------------------------------------

SUBNET, NG = "aws:ec2/subnet:Subnet", "aws:eks/nodeGroup:NodeGroup"


def subnet(name: str, public_ip: bool, tags: dict | None = None) -> Res:
    return Res(SUBNET, name, {"mapPublicIpOnLaunch": public_ip, "tags": tags or {}})


def test_node_subnet_with_public_ip_fails_via_property_dependency():
    priv, pub = subnet("private-a", True), subnet("public-a", True, {"kubernetes.io/role/elb": "1"})
    ng = Res(NG, "workers", {"subnetIds": ["subnet-1"]}, property_dependencies={"subnetIds": [priv.urn]})
    found = check_stack("node-subnets-private", [priv, pub, ng])
    assert found == [("node subnet private-a has mapPublicIpOnLaunch=true", priv.urn)]


def test_public_subnets_may_map_public_ips():
    priv, pub = subnet("private-a", False), subnet("public-a", True, {"kubernetes.io/role/elb": "1"})
    ng = Res(NG, "workers", {}, property_dependencies={"subnetIds": [priv.urn]})
    assert check_stack("node-subnets-private", [priv, pub, ng]) == []


def test_node_subnet_found_by_plain_dependency_or_internal_elb_tag():
    a, b = subnet("a", True), subnet("b", True, {"kubernetes.io/role/internal-elb": "1"})
    ng = Res(NG, "workers", {}, dependencies=[a.urn])
    assert {u for _, u in check_stack("node-subnets-private", [a, b, ng])} == {a.urn, b.urn}


# --- EKS cluster ------------------------------------------------------------------------------

EKS = "aws:eks/cluster:Cluster"
KEY = "arn:aws:kms:us-east-1:123456789012:key/k"


@pytest.mark.parametrize(
    "enc",
    [
        {"resources": ["secrets"], "provider": {"keyArn": KEY}},
        [{"resources": ["secrets"], "provider": {"keyArn": KEY}}],  # older, list-shaped schema
    ],
)
def test_secrets_encryption_passes(enc):
    assert check("eks-secrets-encryption", EKS, {"encryptionConfig": enc}) == []


@pytest.mark.parametrize(
    "props",
    [
        {},
        {"encryptionConfig": {"resources": ["configmaps"], "provider": {"keyArn": KEY}}},
        {"encryptionConfig": {"resources": ["secrets"], "provider": {}}},
    ],
)
def test_secrets_encryption_fails(props):
    assert len(check("eks-secrets-encryption", EKS, props)) == 1


def test_audit_logging():
    assert (
        check("eks-audit-logging", EKS, {"enabledClusterLogTypes": ["api", "audit", "authenticator"]}) == []
    )
    assert check("eks-audit-logging", EKS, {"enabledClusterLogTypes": ["api"]}) == [
        "enabledClusterLogTypes ['api'] must include 'audit'"
    ]
    assert len(check("eks-audit-logging", EKS, {})) == 1


@pytest.mark.parametrize(
    "vpc",
    [
        {"endpointPublicAccess": False},
        {"endpointPublicAccess": True, "publicAccessCidrs": ["198.51.100.0/24"]},
        {"publicAccessCidrs": ["203.0.113.7/32", "2001:db8::/32"]},
    ],
)
def test_public_endpoint_restricted_passes(vpc):
    assert check("eks-public-endpoint-restricted", EKS, {"vpcConfig": vpc}) == []


@pytest.mark.parametrize(
    "vpc",
    [
        {},  # AWS defaults: public on, 0.0.0.0/0
        {"endpointPublicAccess": True, "publicAccessCidrs": []},
        {"endpointPublicAccess": True, "publicAccessCidrs": ["10.0.0.0/8", "0.0.0.0/0"]},
        {"publicAccessCidrs": ["::/0"]},
    ],
)
def test_public_endpoint_open_fails(vpc):
    assert len(check("eks-public-endpoint-restricted", EKS, {"vpcConfig": vpc})) == 1


# --- Dask exposure ----------------------------------------------------------------------------

SVC, ING = "kubernetes:core/v1:Service", "kubernetes:networking.k8s.io/v1:Ingress"


def lb(ports: list[dict], ranges: list[str] | None = None, typ: str = "LoadBalancer") -> dict:
    spec: dict = {"type": typ, "ports": ports}
    if ranges is not None:
        spec["loadBalancerSourceRanges"] = ranges
    return {"metadata": {"name": "dask"}, "spec": spec}


@pytest.mark.parametrize(
    "ports",
    [
        [{"name": "http-dashboard", "port": 80.0, "targetPort": 8787.0}],
        [{"port": 8787.0}],
        [{"name": "web", "port": 80.0, "targetPort": "dashboard"}],
        [{"name": "tcp-comm", "port": 8786.0}],
    ],
)
def test_load_balancer_without_allow_list_fails(ports):
    (msg,) = check("dask-dashboard-allow-list", SVC, lb(ports))
    assert "loadBalancerSourceRanges" in msg
    assert len(check("dask-dashboard-allow-list", SVC, lb(ports, ["0.0.0.0/0"]))) == 1
    assert check("dask-dashboard-allow-list", SVC, lb(ports, ["198.51.100.0/24"])) == []


def test_internal_service_types_and_other_ports_pass():
    assert check("dask-dashboard-allow-list", SVC, lb([{"port": 8787.0}], typ="ClusterIP")) == []
    assert check("dask-dashboard-allow-list", SVC, lb([{"name": "metrics", "port": 9090.0}])) == []


def ingress(annotations: dict) -> dict:
    backend = {"service": {"name": "dask-scheduler", "port": {"number": 8787.0}}}
    return {
        "metadata": {"annotations": annotations},
        "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": backend}]}}]},
    }


def test_ingress_to_dashboard_needs_allow_list():
    assert len(check("dask-dashboard-allow-list", ING, ingress({}))) == 1
    open_all = {"alb.ingress.kubernetes.io/inbound-cidrs": "0.0.0.0/0"}
    assert len(check("dask-dashboard-allow-list", ING, ingress(open_all))) == 1
    ok = {"alb.ingress.kubernetes.io/inbound-cidrs": "198.51.100.0/24, 203.0.113.0/24"}
    assert check("dask-dashboard-allow-list", ING, ingress(ok)) == []


# --- replicas and desired sizes ---------------------------------------------------------------

DEP = "kubernetes:apps/v1:Deployment"


def deployment(component: str, command: list[str]) -> dict:
    labels = {"app.kubernetes.io/name": "dask", "app.kubernetes.io/component": component}
    return {
        "metadata": {"labels": labels},
        "spec": {
            "replicas": 1.0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "command": command}]},
            },
        },
    }


def test_worker_replicas_must_be_ignored():
    worker = deployment("worker", ["dask", "worker", "tcp://scheduler:8786"])
    (msg,) = check("dask-worker-replicas-unmanaged", DEP, worker)
    assert "spec.replicas" in msg
    assert check("dask-worker-replicas-unmanaged", DEP, worker, ("spec.replicas",)) == []
    assert check("dask-worker-replicas-unmanaged", DEP, worker, ("spec",)) == []
    assert len(check("dask-worker-replicas-unmanaged", DEP, worker, ("spec.template",))) == 1


def test_worker_found_by_command_alone():
    props = deployment("compute", ["dask-worker", "tcp://s:8786"])
    props["metadata"]["labels"] = {}
    props["spec"]["template"]["metadata"]["labels"] = {}
    props["spec"]["selector"]["matchLabels"] = {}
    assert len(check("dask-worker-replicas-unmanaged", DEP, props)) == 1


def test_scheduler_deployment_is_not_the_worker():
    """The scheduler's command names the worker Deployment; that must not make it the worker."""
    argv = [
        "dask",
        "scheduler",
        "--deployment",
        "dask-worker",
        "--selector",
        "app.kubernetes.io/component=worker",
    ]
    assert check("dask-worker-replicas-unmanaged", DEP, deployment("scheduler", argv)) == []
    unlabelled = deployment("scheduler", argv)
    unlabelled["metadata"]["labels"] = unlabelled["spec"]["template"]["metadata"]["labels"] = {}
    unlabelled["spec"]["selector"]["matchLabels"] = {}
    assert check("dask-worker-replicas-unmanaged", DEP, unlabelled) == []


@pytest.mark.parametrize(
    "argv", [["/usr/local/bin/dask-worker", "tcp://s:8786"], ["python", "-m", "distributed.cli.dask_worker"]]
)
def test_unlabelled_worker_found_by_its_program(argv):
    props = deployment("worker", argv)
    props["metadata"]["labels"] = props["spec"]["template"]["metadata"]["labels"] = {}
    props["spec"]["selector"]["matchLabels"] = {}
    assert len(check("dask-worker-replicas-unmanaged", DEP, props)) == 1


AUTOSCALED = {"scalingConfig": {"minSize": 0.0, "maxSize": 5.0, "desiredSize": 0.0}}


def test_node_group_desired_size():
    assert check("nodegroup-desired-size-ignored", NG, AUTOSCALED, ("scalingConfig.desiredSize",)) == []
    assert check("nodegroup-desired-size-ignored", NG, AUTOSCALED, ("scalingConfig",)) == []
    (msg,) = check("nodegroup-desired-size-ignored", NG, AUTOSCALED)
    assert "scalingConfig.desiredSize" in msg
    (msg,) = check("nodegroup-desired-size-ignored", NG, AUTOSCALED, ("scaling_config.desired_size",))
    assert "camelCase" in msg
    assert len(check("nodegroup-desired-size-ignored", NG, {})) == 1  # bounds unknown: assume autoscaled
    asg = "aws:autoscaling/group:Group"
    assert (
        check("nodegroup-desired-size-ignored", asg, {"minSize": 1.0, "maxSize": 3.0}, ("desiredCapacity",))
        == []
    )
    assert len(check("nodegroup-desired-size-ignored", asg, {"minSize": 1.0, "maxSize": 3.0})) == 1


def test_desired_size_written_from_the_live_group_is_allowed_only_inside_the_bounds():
    from adaptive_dask_policy.props import DESIRED_FROM_LIVE_TAG

    from infra.aws.nodegroups import DESIRED_FROM_LIVE_TAG as PROGRAM_TAG

    assert DESIRED_FROM_LIVE_TAG == PROGRAM_TAG  # the pack cannot import the program: one fact, checked
    marked = {
        "scalingConfig": {"minSize": 2.0, "maxSize": 5.0, "desiredSize": 2.0},
        "tags": {PROGRAM_TAG: "0"},
    }
    assert check("nodegroup-desired-size-ignored", NG, marked) == []
    outside = {**marked, "scalingConfig": {"minSize": 2.0, "maxSize": 5.0, "desiredSize": 7.0}}
    assert len(check("nodegroup-desired-size-ignored", NG, outside)) == 1
    unmarked = {"scalingConfig": marked["scalingConfig"], "tags": {"Name": "x"}}
    assert len(check("nodegroup-desired-size-ignored", NG, unmarked)) == 1


def test_fixed_size_node_group_may_own_its_desired_size():
    fixed = {"scalingConfig": {"minSize": 3.0, "maxSize": 3.0, "desiredSize": 3.0}}
    assert check("nodegroup-desired-size-ignored", NG, fixed) == []
    assert (
        check(
            "nodegroup-desired-size-ignored", "aws:autoscaling/group:Group", {"minSize": 2.0, "maxSize": 2.0}
        )
        == []
    )


def test_ignores_matches_parents_only():
    assert ignores(["spec"], "spec.replicas") and ignores(["spec.replicas"], "spec.replicas")
    assert not ignores(["spec.replicasX"], "spec.replicas") and not ignores(
        ["spec.replicas.x"], "spec.replicas"
    )


# --- IAM --------------------------------------------------------------------------------------


def doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


CA_READ = {
    "Effect": "Allow",
    "Action": ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeImages", "eks:DescribeNodegroup"],
    "Resource": "*",
}
CA_WRITE = {"Effect": "Allow", "Action": ["autoscaling:SetDesiredCapacity"], "Resource": ["*"]}
CA_COND = {"StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/demo": "owned"}}


def test_iam_read_on_star_and_conditioned_write_pass():
    props = {"policy": doc(CA_READ, {**CA_WRITE, "Condition": CA_COND})}
    assert check("iam-no-unconditioned-write-on-star", "aws:iam/policy:Policy", props) == []
    scoped = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*"}
    assert iam_document_violations(doc(scoped)) == []
    assert iam_document_violations(doc({"Effect": "Deny", "Action": "*", "Resource": "*"})) == []


@pytest.mark.parametrize(
    "statement",
    [
        CA_WRITE,
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
        {"Effect": "Allow", "Action": ["ec2:Describe*", "ec2:TerminateInstances"], "Resource": "*"},
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
    ],
)
def test_iam_write_on_star_without_condition_fails(statement):
    for typ in ("aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy"):
        (msg,) = check("iam-no-unconditioned-write-on-star", typ, {"policy": doc(CA_READ, statement)})
        assert "Statement[1]" in msg


def test_iam_role_inline_policies_checked():
    props = {"inlinePolicies": [{"name": "x", "policy": doc(CA_WRITE)}]}
    assert len(check("iam-no-unconditioned-write-on-star", "aws:iam/role:Role", props)) == 1


def test_iam_unparseable_document_is_reported():
    assert (
        "not JSON" in check("iam-no-unconditioned-write-on-star", "aws:iam/policy:Policy", {"policy": "{"})[0]
    )


# --- cluster-autoscaler version ---------------------------------------------------------------


def ca_graph(cluster_version: str | None, tag: str | None) -> list[Res]:
    cluster = Res(EKS, "cluster", {"version": cluster_version} if cluster_version else {})
    values = {"image": {"tag": tag}} if tag else {}
    ca = Res("kubernetes:helm.sh/v3:Release", "ca", {"chart": "cluster-autoscaler", "values": values})
    return [cluster, ca]


def test_ca_version_matches():
    assert check_stack("cluster-autoscaler-matches-cluster", ca_graph("1.31", "v1.31.2")) == []
    # no cluster-autoscaler at all: nothing to compare
    assert check_stack("cluster-autoscaler-matches-cluster", ca_graph("1.31", None)[:1]) == []


@pytest.mark.parametrize(
    ("version", "tag", "needle"),
    [
        ("1.31", "v1.32.0", "does not match cluster version 1.31"),
        ("1.31", None, "not pinned"),
        (None, "v1.31.0", "cluster version is not pinned"),
    ],
)
def test_ca_version_mismatch_fails(version, tag, needle):
    ((msg, urn),) = check_stack("cluster-autoscaler-matches-cluster", ca_graph(version, tag))
    assert needle in msg and urn


def test_ca_as_plain_deployment_is_checked_too():
    cluster = Res(EKS, "cluster", {"version": "1.30"})
    image = "registry.k8s.io/autoscaling/cluster-autoscaler:v1.31.0"
    dep = Res(DEP, "ca", {"spec": {"template": {"spec": {"containers": [{"image": image}]}}}})
    assert len(check_stack("cluster-autoscaler-matches-cluster", [cluster, dep])) == 1


# --- enforcement and pack wiring --------------------------------------------------------------

SECURITY = {
    "imdsv2-required",
    "imds-hop-limit-one",
    "node-subnets-private",
    "eks-secrets-encryption",
    "eks-audit-logging",
    "eks-public-endpoint-restricted",
    "dask-dashboard-allow-list",
    "iam-no-unconditioned-write-on-star",
    "dask-namespace-default-deny",
    "vpc-cni-enforces-network-policy",
    "dask-scheduler-admission-policy",
    "dask-mutual-tls",
}
CORRECTNESS = {
    "dask-worker-replicas-unmanaged",
    "nodegroup-desired-size-ignored",
    "cluster-autoscaler-matches-cluster",
}


def test_enforcement_levels():
    assert set(RULE_NAMES) == SECURITY | CORRECTNESS and len(RULE_NAMES) == len(set(RULE_NAMES))
    strict = {p.name: p.enforcement_level for p in build_policies(strict=True)}
    lenient = {p.name: p.enforcement_level for p in build_policies(strict=False)}
    assert set(strict.values()) == {EnforcementLevel.MANDATORY}
    assert {n for n, lvl in lenient.items() if lvl == EnforcementLevel.ADVISORY} == SECURITY
    assert {n for n, lvl in lenient.items() if lvl == EnforcementLevel.MANDATORY} == CORRECTNESS


@pytest.mark.parametrize(
    ("stack", "config", "strict"),
    [
        ("prod", None, True),
        ("acme/adaptive-dask/prod", None, True),
        ("prod-eu", {}, True),
        ("dev", None, False),
        ("local", {}, False),
        ("producer", None, False),
        (None, None, True),  # cannot tell: fail closed
        ("dev", {STRICT_CONFIG_KEY: "true"}, True),
        ("prod", json.dumps({STRICT_CONFIG_KEY: "false"}), True),  # config cannot relax prod
        ("qa", json.dumps({STRICT_CONFIG_KEY: "true", "aws:region": "eu-west-1"}), True),
        ("dev", "not json", False),
    ],
)
def test_is_strict(stack, config, strict):
    assert is_strict(stack, config) is strict


def test_lenient_stack_reports_security_rules_as_advisory():
    res = [Res(EKS, "cluster", {"vpcConfig": {}})]
    levels = {(v.policy, v.level) for v in run_pack(res, strict=False)}
    assert ("eks-public-endpoint-restricted", EnforcementLevel.ADVISORY) in levels
    assert all(
        lvl == EnforcementLevel.MANDATORY
        for _, lvl in {(v.policy, v.level) for v in run_pack(res, strict=True)}
    )


def test_pack_files():
    spec = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert spec["runtime"]["name"] == "python" and spec["runtime"]["options"]["virtualenv"] == ".venv"
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(spec["version"]))
    assert re.fullmatch(r"[a-zA-Z0-9-_.]{1,100}", PACK_NAME)
    main = (ROOT / "policy" / "__main__.py").read_text()
    assert "build_policies(" in main and "PolicyPack(" in main and "PULUMI_STACK" in main


def test_unknown_values_surface_as_unknown_not_as_violations():
    """In preview an unknown prop must raise UnknownValueError (the engine turns it into an advisory
    "can't run during preview" note), never be mistaken for a bad value."""
    props = {"metadataOptions": {"httpTokens": UNKNOWN_STRING_VALUE}}
    with pytest.raises(UnknownValueError):
        check("imdsv2-required", LT, props)
    cluster = Res(EKS, "cluster", {"version": UNKNOWN_STRING_VALUE})
    ca = Res(
        "kubernetes:helm.sh/v3:Release",
        "ca",
        {"chart": "cluster-autoscaler", "values": {"image": {"tag": "v1.31.0"}}},
    )
    with pytest.raises(UnknownValueError):
        check_stack("cluster-autoscaler-matches-cluster", [cluster, ca])


# --- the Dask namespace's fences (issue 12) ---------------------------------------------------


def test_vpc_cni_must_enforce_network_policies():
    addon = "aws:eks/addon:Addon"
    rule = "vpc-cni-enforces-network-policy"
    on = {"addonName": "vpc-cni", "configurationValues": '{"enableNetworkPolicy": "true"}'}
    assert check(rule, addon, on) == []
    assert len(check(rule, addon, {"addonName": "vpc-cni"})) == 1
    assert len(check(rule, addon, {**on, "configurationValues": '{"enableNetworkPolicy": "false"}'})) == 1
    assert check(rule, addon, {**on, "configurationValues": "{not json"}) == [
        "vpc-cni configurationValues is not JSON"
    ]
    assert check(rule, addon, {"addonName": "coredns"}) == []


def test_default_deny_means_all_pods_ingress_and_no_rule():
    from adaptive_dask_policy.fence_checks import is_default_deny

    deny = {"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    assert is_default_deny(deny)
    assert not is_default_deny({"spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}})
    assert not is_default_deny(
        {"spec": {"podSelector": {"matchLabels": {"a": "b"}}, "policyTypes": ["Ingress"]}}
    )
    assert not is_default_deny({"spec": {"podSelector": {}, "policyTypes": ["Egress"]}})


def test_headroom_placeholders_pass_the_rules_for_dask_pods():
    """Pause pods with the stack's labels: no Dask connection to encrypt, replicas owned by Pulumi."""
    from adaptive_dask_policy.checks import check_worker_replicas
    from adaptive_dask_policy.fence_checks import check_dask_mutual_tls

    from infra.k8s import headroom
    from infra.k8s.dask_objects import Names
    from testbed.infra import builders

    settings = builders.dask({"headroomWorkers": 1}, target="local")
    held = headroom.placeholder_deployment(settings, Names.of(settings))
    assert check_dask_mutual_tls(held) == []
    assert check_worker_replicas(held, []) == []
    worker_like = json.loads(json.dumps(held).replace('"headroom"', '"worker"'))
    assert check_dask_mutual_tls(worker_like)  # the same pod labelled a worker would be flagged


VAP = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicy"
VAPB = "kubernetes:admissionregistration.k8s.io/v1:ValidatingAdmissionPolicyBinding"
USER = "system:serviceaccount:dask:dask-scheduler"


def scheduler_and_fence(spec: dict, actions: tuple[str, ...] = ("Deny",)) -> list[Res]:
    scheduler = Res(
        "kubernetes:apps/v1:Deployment",
        "scheduler",
        {
            "metadata": {
                "namespace": "dask",
                "labels": {"app.kubernetes.io/name": "dask", "app.kubernetes.io/component": "scheduler"},
            },
            "spec": {"template": {"spec": {"serviceAccountName": "dask-scheduler"}}},
        },
    )
    match = [{"name": "sa", "expression": f"request.userInfo.username == '{USER}'"}]
    policy = Res(VAP, "fence", {"metadata": {"name": "fence"}, "spec": {"matchConditions": match, **spec}})
    binding = Res(VAPB, "bind", {"spec": {"policyName": "fence", "validationActions": list(actions)}})
    return [scheduler, policy, binding]


DENIES = [{"expression": "request.operation != 'CREATE'", "message": "no"}]


@pytest.mark.parametrize("spec", [{"failurePolicy": "Fail", "validations": DENIES}, {"validations": DENIES}])
def test_scheduler_fence_that_fails_closed_passes(spec):
    """failurePolicy unset is the API server's default, Fail."""
    assert check_stack("dask-scheduler-admission-policy", scheduler_and_fence(spec)) == []


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"failurePolicy": "Ignore", "validations": DENIES}, "spec.failurePolicy is 'Ignore'"),
        ({"failurePolicy": "Fail"}, "spec.validations has no expression that can fail"),
        ({"failurePolicy": "Fail", "validations": []}, "spec.validations has no expression that can fail"),
        ({"validations": [{"expression": " true "}]}, "spec.validations has no expression that can fail"),
    ],
)
def test_scheduler_fence_that_fails_open_or_validates_nothing_fails(spec, needle):
    resources = scheduler_and_fence(spec)
    found = check_stack("dask-scheduler-admission-policy", resources)
    scheduler, policy, _ = resources
    assert {u for _, u in found} == {policy.urn, scheduler.urn}
    assert any(needle in m and USER in m for m, u in found if u == policy.urn)


def test_scheduler_fence_binding_must_deny():
    resources = scheduler_and_fence({"validations": DENIES}, actions=("Audit", "Warn"))
    found = check_stack("dask-scheduler-admission-policy", resources)
    scheduler, _, binding = resources
    assert {u for _, u in found} == {binding.urn, scheduler.urn}
