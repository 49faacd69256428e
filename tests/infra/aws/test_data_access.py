"""Issue 22 §1: the workers' own AWS identity (EKS Pod Identity), scoped to the configured buckets.

Under the program's mocks: the association names exactly the workers' ServiceAccount in the Dask
namespace (the one their pod template runs as) and nothing else; the role's trust and policy are exact
and pass parliament's lint; the Pod Identity agent is installed only when asked; bad input is refused
before anything is registered, naming the key.
"""

from __future__ import annotations

import json

import pytest

from infra.aws import iam
from infra.config.data_access import DataBucket
from infra.config.load import load_settings
from infra.errors import ConfigError
from testbed.infra.builders import PROD_CLUSTER, PROD_NETWORK
from testbed.infra.harness import Graph, install, run_program, stack_value
from tests.infra.data_role import ASSOCIATION, ROLE, ROLE_POLICY, ours, with_data
from tests.infra.iam_lint import findings

NS = "adaptive-dask"
ADDON = "aws:eks/addon:Addon"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
BUCKETS = [
    {"bucket": "team-climate-data", "prefix": "era5/", "access": "read"},
    {"bucket": "team-results", "prefix": "runs", "access": "readwrite"},
    {"bucket": "public-reference"},
]
KMS = "arn:aws:kms:eu-west-1:111122223333:key/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"


def pod_template(g: Graph, component: str) -> dict:
    [node] = [
        n
        for n in g.of_type(DEPLOYMENT)
        if n.inputs["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return node.inputs["spec"]["template"]


@pytest.fixture
def data_graph(stack_graph) -> Graph:
    return stack_graph("dev", overrides=with_data("dev", dataBuckets=BUCKETS, dataKmsKeyArns=[KMS]))


def test_the_association_binds_exactly_the_workers_service_account(data_graph: Graph) -> None:
    [association] = data_graph.of_type(ASSOCIATION)
    worker, scheduler = pod_template(data_graph, "worker"), pod_template(data_graph, "scheduler")
    [namespace] = data_graph.of_type("kubernetes:core/v1:Namespace")
    assert association.inputs["namespace"] == namespace.inputs["metadata"]["name"]
    assert association.inputs["serviceAccount"] == worker["spec"]["serviceAccountName"]
    assert scheduler["spec"]["serviceAccountName"] != association.inputs["serviceAccount"]  # no data role
    [cluster] = data_graph.of_type("aws:eks/cluster:Cluster")
    assert association.inputs["clusterName"] == cluster.state["name"]
    # credentials are injected only into pods created after the association: the Dask layer waits for it
    assert data_graph.depends_on(namespace, association)
    [agent] = [a for a in data_graph.of_type(ADDON) if a.inputs["addonName"] == "eks-pod-identity-agent"]
    assert data_graph.depends_on(association, agent)
    role_arn = association.inputs["roleArn"]
    [role] = [r for r in data_graph.of_type(ROLE) if r.state.get("arn") == role_arn]
    assert json.loads(role.inputs["assumeRolePolicy"]) == json.loads(iam.pod_identity_trust_policy())
    assert data_graph.exports["workerDataRoleArn"] == role_arn


def test_the_policy_names_each_bucket_and_prefix_and_writes_only_where_asked(data_graph: Graph) -> None:
    [policy] = ours(data_graph, ROLE_POLICY)
    doc = json.loads(policy.inputs["policy"])
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    resources = {r for s in doc["Statement"] for r in s["Resource"]}
    assert not any(r.endswith(":::*") or r == "*" for r in resources)  # never a wildcard bucket
    read = next(s for s in doc["Statement"] if s["Resource"] == ["arn:aws:s3:::team-climate-data/era5/*"])
    assert read["Action"] == ["s3:GetObject"]
    write = next(s for s in doc["Statement"] if s["Resource"] == ["arn:aws:s3:::team-results/runs/*"])
    assert write["Action"] == ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    listing = next(s for s in doc["Statement"] if s["Resource"] == ["arn:aws:s3:::team-climate-data"])
    assert listing["Action"] == ["s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["era5/", "era5/*"]}}
    whole = next(s for s in doc["Statement"] if s["Resource"] == ["arn:aws:s3:::public-reference"])
    assert "Condition" not in whole  # no prefix: the whole bucket, read only
    kms = by_sid["DecryptThroughS3"]
    assert kms["Resource"] == [KMS]
    region = stack_value("dev", "aws:region")
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}
    assert findings(doc) == []
    assert not data_graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") or all(
        "AmazonS3" not in a.inputs["policyArn"]
        for a in data_graph.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    )


def test_policy_document_is_exact_for_one_entry() -> None:
    doc = json.loads(iam.data_access_policy("aws", "us-east-1", [DataBucket("b-1", "x/", "read")], []))
    assert doc["Statement"] == [
        {
            "Sid": "List0B1",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::b-1"],
            "Condition": {"StringLike": {"s3:prefix": ["x/", "x/*"]}},
        },
        {
            "Sid": "Read0B1",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": ["arn:aws:s3:::b-1/x/*"],
        },
    ]


def test_without_data_keys_there_is_no_role_no_association_and_no_agent(stack_graph) -> None:
    g = stack_graph("dev")
    assert g.of_type(ASSOCIATION) == []
    assert [a for a in g.of_type(ADDON) if a.inputs["addonName"] == "eks-pod-identity-agent"] == []
    assert "workerDataRoleArn" not in g.exports


def test_extra_managed_policies_are_attached_to_the_workers_role_only(stack_graph) -> None:
    extra = "arn:aws:iam::111122223333:policy/team-athena-read"
    g = stack_graph("dev", overrides=with_data("dev", workerPolicyArns=[extra]))
    [association] = g.of_type(ASSOCIATION)
    attachments = [
        a
        for a in g.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["policyArn"] == extra
    ]
    [attachment] = attachments
    [role] = [r for r in g.of_type(ROLE) if r.state.get("arn") == association.inputs["roleArn"]]
    assert attachment.inputs["role"] == role.state["name"]
    assert ours(g, ROLE_POLICY) == []  # no buckets: no bucket policy


def test_the_local_target_annotates_the_workers_service_account(stack_graph) -> None:
    annotations = {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/dask-workers"}
    g = stack_graph("local", overrides=with_data("local", workerServiceAccountAnnotations=annotations))
    accounts = {
        n.inputs["metadata"]["name"]: n.inputs["metadata"]
        for n in g.of_type("kubernetes:core/v1:ServiceAccount")
    }
    assert accounts["dask-worker"]["annotations"] == annotations
    assert "annotations" not in accounts["dask-scheduler"]


# ---------------------------------------------------------------- bad input, before anything is created


def config(dask: dict, *, target: str = "aws", production: bool = False) -> dict[str, str]:
    out = {f"{NS}:dask": json.dumps(dask), f"{NS}:target": target}
    if production:
        out |= {
            f"{NS}:production": "true",
            f"{NS}:network": json.dumps(PROD_NETWORK),
            f"{NS}:cluster": json.dumps(PROD_CLUSTER),
        }
    return out


BAD = [
    (
        "upper case",
        {"dataBuckets": [{"bucket": "Team_Data"}]},
        "dask.dataBuckets[0].bucket",
        "S3 bucket name",
    ),
    ("too short", {"dataBuckets": [{"bucket": "ab"}]}, "dask.dataBuckets[0].bucket", "3-63"),
    ("wildcard", {"dataBuckets": [{"bucket": "team-*"}]}, "dask.dataBuckets[0].bucket", "no wildcard"),
    ("ip", {"dataBuckets": [{"bucket": "192.168.10.2"}]}, "dask.dataBuckets[0].bucket", "IP address"),
    ("double dot", {"dataBuckets": [{"bucket": "a..b"}]}, "dask.dataBuckets[0].bucket", "S3 bucket name"),
    ("reserved", {"dataBuckets": [{"bucket": "xn--data"}]}, "dask.dataBuckets[0].bucket", "reserved"),
    (
        "prefix star",
        {"dataBuckets": [{"bucket": "team-data", "prefix": "raw/*"}]},
        "dask.dataBuckets[0].prefix",
        "no '*'",
    ),
    (
        "prefix slash",
        {"dataBuckets": [{"bucket": "team-data", "prefix": "/raw"}]},
        "dask.dataBuckets[0].prefix",
        "no leading '/'",
    ),
    (
        "access",
        {"dataBuckets": [{"bucket": "team-data", "access": "write"}]},
        "dask.dataBuckets[0].access",
        "read, readwrite",
    ),
    (
        "duplicate",
        {"dataBuckets": [{"bucket": "team-data", "prefix": "a"}, {"bucket": "team-data", "prefix": "a/"}]},
        "dask.dataBuckets[1]",
        "duplicates",
    ),
    (
        "unknown field",
        {"dataBuckets": [{"bucket": "team-data", "region": "x"}]},
        "dask.dataBuckets[0].region",
        "unknown",
    ),
    (
        "kms alias",
        {"dataBuckets": [{"bucket": "team-data"}], "dataKmsKeyArns": ["alias/x"]},
        "dask.dataKmsKeyArns[0]",
        "KMS key ARN",
    ),
    ("kms alone", {"dataKmsKeyArns": [KMS]}, "dask.dataKmsKeyArns", "list the buckets"),
    (
        "policy arn",
        {"workerPolicyArns": ["AmazonS3FullAccess"]},
        "dask.workerPolicyArns[0]",
        "IAM policy ARN",
    ),
    (
        "annotations on aws",
        {"workerServiceAccountAnnotations": {"eks.amazonaws.com/role-arn": "x"}},
        "dask.workerServiceAccountAnnotations",
        "local target",
    ),
]


@pytest.mark.parametrize(("case", "dask", "key", "allowed"), BAD, ids=[b[0] for b in BAD])
def test_bad_data_input_is_refused_naming_the_key(case: str, dask: dict, key: str, allowed: str) -> None:
    install(stack="test", config=config(dask))
    with pytest.raises(ConfigError) as caught:
        run_program(load_settings)
    assert caught.value.key == f"{NS}:{key}", caught.value
    assert allowed in caught.value.allowed


def test_the_local_target_refuses_the_aws_keys() -> None:
    install(stack="test", config=config({"dataBuckets": [{"bucket": "team-data"}]}, target="local"))
    with pytest.raises(ConfigError) as caught:
        run_program(load_settings)
    assert (
        caught.value.key == f"{NS}:dask.dataBuckets"
        and "workerServiceAccountAnnotations" in caught.value.allowed
    )


def test_production_must_pin_the_agent_it_installs() -> None:
    install(stack="test", config=config({"dataBuckets": [{"bucket": "team-data"}]}, production=True))
    with pytest.raises(ConfigError) as caught:
        run_program(load_settings)
    assert (
        caught.value.key == f"{NS}:cluster.addonVersions" and "eks-pod-identity-agent" in caught.value.allowed
    )
    pinned = {
        **PROD_CLUSTER,
        "addonVersions": {**PROD_CLUSTER["addonVersions"], "eks-pod-identity-agent": "v1.3.9-eksbuild.3"},
    }
    install(
        stack="test",
        config={
            **config({"dataBuckets": [{"bucket": "team-data"}]}, production=True),
            f"{NS}:cluster": json.dumps(pinned),
        },
    )
    settings = run_program(load_settings)
    assert settings.dask.data_access.buckets == (DataBucket("team-data", "", "read"),)


def test_worker_egress_reaches_the_pod_identity_agent_and_s3_but_not_imds(stack_graph) -> None:
    """round3-facts: the agent answers on 169.254.170.23; blocking all of 169.254.0.0/16 would silently
    break the credentials. S3 through the gateway endpoint keeps its public addresses."""
    import ipaddress

    g = stack_graph("dev", overrides=with_data("dev", dataBuckets=BUCKETS))
    [policy] = [
        n
        for n in g.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if n.inputs["metadata"]["name"] == "dask-workers-egress"
    ]
    blocks = [p["ipBlock"] for rule in policy.inputs["spec"]["egress"] for p in rule["to"] if "ipBlock" in p]

    def allowed(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(
            ip in ipaddress.ip_network(b["cidr"])
            and not any(ip in ipaddress.ip_network(e) for e in b.get("except", []))
            for b in blocks
        )

    assert allowed("169.254.170.23")  # EKS Pod Identity agent
    assert allowed("52.218.1.10")  # an S3 address (gateway endpoint: a route, same public addresses)
    assert not allowed("169.254.169.254")  # IMDS: the node role stays out of reach
