"""The in-cluster notebook's objects (issue 23 §1), as the real program registers them under mocks: present
only when enabled; the cluster's image; the client certificate only; `Client()` configured for TLS;
Pod Security `restricted`; API rights for the init container alone, on one Secret by name; the token
never in the program's inputs; the home volume; placement; the quota; the `jupyterSetup` output."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from infra.config.jupyter import AWS_STORAGE_CLASS
from infra.facts.placement import POOL_LABEL, SYSTEM_POOL
from infra.facts.quantity import parse_cpu_millicores, parse_memory_bytes
from infra.k8s import dask_objects as kd
from infra.k8s import jupyter, jupyter_lab, jupyter_token
from infra.k8s.tls_mount import CLIENT_SECRET, CLUSTER_SECRET
from testbed.infra import builders
from testbed.infra.harness import Graph, stack_names
from tests.infra.pod_security import restricted_violations
from tests.infra.schema import schema_errors, wire_to_json

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SECRET = "kubernetes:core/v1:Secret"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
NOTEBOOK_TYPES = (
    "kubernetes:core/v1:ServiceAccount",
    SECRET,
    ROLE,
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding",
    "kubernetes:core/v1:ConfigMap",
    PVC,
    "kubernetes:core/v1:Service",
    DEPLOYMENT,
)


def notebook_nodes(g: Graph) -> list:
    return [n for n in g.nodes if n.type in NOTEBOOK_TYPES and "notebook" in str(n.inputs.get("metadata"))]


def deployment_of(g: Graph, component: str):
    [node] = [
        n
        for n in g.of_type(DEPLOYMENT)
        if n.inputs["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return node


def pod(g: Graph) -> dict:
    return wire_to_json(deployment_of(g, "notebook").inputs["spec"]["template"])  # type: ignore[return-value]


@pytest.fixture
def dev(stack_graph) -> Graph:
    """dev with the notebook on (the committed stack has it off): the team's image, a 500m/2Gi lab."""
    return stack_graph("dev", overrides=builders.jupyter_overrides("dev", **builders.DEV_NOTEBOOK))


@pytest.fixture
def local_on(stack_graph) -> Graph:
    return stack_graph("local", overrides=builders.jupyter_overrides("local"))


@pytest.mark.parametrize("stack", stack_names())
def test_nothing_of_the_notebook_when_it_is_off(stack_graph, stack):
    g = stack_graph(stack)
    assert notebook_nodes(g) == [] and "jupyterSetup" not in g.exports


@pytest.mark.parametrize("which", ["dev", "local_on"])
def test_every_object_is_registered_once(request, which):
    g: Graph = request.getfixturevalue(which)
    assert sorted(n.type for n in notebook_nodes(g)) == sorted(NOTEBOOK_TYPES)


@pytest.mark.parametrize(("target", "minor"), [("aws", "1.35"), ("local", "1.33")])
def test_the_builders_objects_are_valid_for_the_minor(target, minor):
    cluster = builders.aws((builders.group("spot", ("m6i.xlarge",)),)) if target == "aws" else None
    raw = {"image": builders.TEAM_IMAGE, "jupyter": {"enabled": "true"}}
    settings = builders.dask(json.dumps(raw), target=target, cluster=cluster)
    manifests = builders.notebook_objects(settings)
    assert [m["kind"] for m in manifests] == [t.rsplit(":", 1)[1] for t in NOTEBOOK_TYPES]
    assert [e for m in manifests for e in schema_errors(m, minor)] == []
    broken = manifests[-1] | {"spec": {**manifests[-1]["spec"], "replica": 1}}
    assert schema_errors(broken, minor)  # the check is strict: an unknown field fails


@pytest.mark.parametrize("which", ["dev", "local_on"])
def test_the_lab_runs_the_clusters_image_and_h2s_command(request, which):
    g: Graph = request.getfixturevalue(which)
    spec = pod(g)["spec"]
    worker_image = deployment_of(g, "worker").inputs["spec"]["template"]["spec"]["containers"][0]["image"]
    images = {c["image"] for c in [*spec["containers"], *spec["initContainers"]]}
    assert images == {worker_image}
    [lab] = spec["containers"]
    assert lab["command"] == jupyter_lab.lab_command(jupyter_lab.LAB_PORT, jupyter.CONFIG_DIR, jupyter.HOME)
    assert lab["command"][:2] == ["jupyter", "lab"]
    # the lab's readiness does not hold up (or fail) the stack's `up`
    assert deployment_of(g, "notebook").inputs["metadata"]["annotations"] == {kd.SKIP_AWAIT: "true"}


@pytest.mark.parametrize("which", ["dev", "local_on"])
def test_only_the_client_certificate_is_mounted_and_client_connects_over_tls(request, which):
    g: Graph = request.getfixturevalue(which)
    spec = pod(g)["spec"]
    secrets_mounted = [v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v]
    assert secrets_mounted == [CLIENT_SECRET]
    assert CLUSTER_SECRET not in json.dumps(spec)
    [lab] = spec["containers"]
    env = {e["name"]: e["value"] for e in lab["env"]}
    namespace = deployment_of(g, "notebook").inputs["metadata"]["namespace"]
    names = kd.Names(namespace, protocol="tls")
    assert env["DASK_SCHEDULER_ADDRESS"] == names.scheduler_address.replace("tcp://", "tls://")
    assert env["DASK_SCHEDULER_ADDRESS"].startswith("tls://dask-scheduler.")
    assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    [tls_mount] = [m for m in lab["volumeMounts"] if m["name"] == "client-tls"]
    for key in ("CA_FILE", "CLIENT__CERT", "CLIENT__KEY"):
        assert env[f"DASK_DISTRIBUTED__COMM__TLS__{key}"].startswith(tls_mount["mountPath"] + "/")
    # no scheduler/worker identity: a client certificate only
    assert not any("__SCHEDULER__" in k or "__WORKER__" in k for k in env)
    assert env["DASK_DISTRIBUTED__DASHBOARD__LINK"].startswith("/proxy/dask-scheduler.")
    assert env["JUPYTER_TOKEN_FILE"] == jupyter.TOKEN_PATH and env["HOME"] == jupyter.HOME


@pytest.mark.parametrize("which", ["dev", "local_on"])
def test_pod_security_restricted_holds(request, which):
    g: Graph = request.getfixturevalue(which)
    assert restricted_violations(pod(g)["spec"]) == []


def test_the_checker_would_catch_a_privileged_init_container(dev):
    spec = pod(dev)["spec"]
    spec["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    assert restricted_violations(spec)


def test_api_rights_are_the_init_containers_alone_on_one_secret_by_name(dev):
    spec = pod(dev)["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["serviceAccountName"] == jupyter.NOTEBOOK
    [api_volume] = [v for v in spec["volumes"] if "projected" in v]
    mounted_in = [
        c["name"]
        for c in [*spec["initContainers"], *spec["containers"]]
        if any(m["name"] == api_volume["name"] for m in c["volumeMounts"])
    ]
    assert mounted_in == ["token"]
    roles = [r for r in dev.of_type(ROLE) if r.inputs["metadata"]["name"] == jupyter.TOKEN_ROLE]
    assert [r.inputs["rules"] for r in roles] == [
        [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [jupyter.TOKEN_SECRET],
                "verbs": ["get", "patch"],
            }
        ]
    ]
    [binding] = [
        n
        for n in dev.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
        if n.inputs["metadata"]["name"] == jupyter.TOKEN_ROLE
    ]
    assert binding.inputs["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": jupyter.NOTEBOOK,
            "namespace": binding.inputs["metadata"]["namespace"],
        }
    ]
    # users of the cluster (the client Role) may read the token, nothing more is added
    [client] = [r for r in dev.of_type(ROLE) if r.inputs["metadata"]["name"] == kd.Names("x").client_role]
    secret_rule = [r for r in client.inputs["rules"] if r["resources"] == ["secrets"]]
    assert secret_rule == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [CLIENT_SECRET, jupyter.TOKEN_SECRET],
            "verbs": ["get"],
        }
    ]


def test_the_token_secret_is_created_empty_and_its_data_ignored(dev):
    [secret] = [s for s in dev.of_type(SECRET) if s.inputs["metadata"]["name"] == jupyter.TOKEN_SECRET]
    assert "data" not in secret.inputs and "stringData" not in secret.inputs
    assert set(secret.ignore_changes) >= {"data", "stringData"}
    assert "app.kubernetes.io/version" not in secret.inputs["metadata"]["labels"]  # never updated


def test_the_home_volume_and_placement_on_aws(dev):
    [claim] = dev.of_type(PVC)
    assert claim.inputs["spec"]["storageClassName"] == AWS_STORAGE_CLASS
    assert claim.inputs["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim.inputs["metadata"]["annotations"][kd.SKIP_AWAIT] == "true"
    [storage_class] = dev.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
    assert dev.depends_on(claim, storage_class) and dev.depends_on(
        deployment_of(dev, "notebook"), storage_class
    )
    spec = pod(dev)["spec"]
    assert spec["nodeSelector"] == {POOL_LABEL: SYSTEM_POOL} and "tolerations" not in spec
    [home] = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert home["persistentVolumeClaim"]["claimName"] == claim.inputs["metadata"]["name"]


def test_local_uses_the_clusters_default_class_and_any_node(local_on):
    [claim] = local_on.of_type(PVC)
    assert "storageClassName" not in claim.inputs["spec"]
    assert "nodeSelector" not in pod(local_on)["spec"]
    assert local_on.of_type("kubernetes:storage.k8s.io/v1:StorageClass") == []


def test_a_named_worker_group_is_selected_and_tolerated(stack_graph):
    g = stack_graph("dev", overrides=builders.jupyter_overrides("dev", nodeGroup="spot"))
    spec = pod(g)["spec"]
    worker_spec = deployment_of(g, "worker").inputs["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {POOL_LABEL: "spot"}
    assert spec["tolerations"] == wire_to_json(worker_spec["tolerations"])


def test_the_quota_counts_the_notebook(dev, stack_graph):
    def quota(g: Graph) -> dict:
        [q] = g.of_type("kubernetes:core/v1:ResourceQuota")
        return q.inputs["spec"]["hard"]

    off = stack_graph("dev")
    on_, off_ = quota(dev), quota(off)
    assert int(on_["pods"]) == int(off_["pods"]) + 1
    lab = pod(dev)["spec"]["containers"][0]["resources"]
    assert lab["requests"] == lab["limits"] == {"cpu": "500m", "memory": "2048Mi"}  # Guaranteed QoS
    for key in ("requests.cpu", "limits.cpu"):
        assert parse_cpu_millicores(on_[key]) - parse_cpu_millicores(off_[key]) == 500
    for key in ("requests.memory", "limits.memory"):
        assert parse_memory_bytes(on_[key]) - parse_memory_bytes(off_[key]) == 2 * 2**30


def test_the_config_map_carries_the_lab_files_and_the_init_script(dev):
    [cm] = [
        c
        for c in dev.of_type("kubernetes:core/v1:ConfigMap")
        if c.inputs["metadata"]["name"] == jupyter.CONFIG_MAP
    ]
    data = cm.inputs["data"]
    assert {jupyter_lab.CONFIG_FILE_NAME, jupyter_lab.OVERRIDES_FILE_NAME, jupyter.TOKEN_SCRIPT} <= set(data)
    server = json.loads(data[jupyter_lab.CONFIG_FILE_NAME])
    assert server["MappingKernelManager"]["cull_idle_timeout"] == 60 * 60
    init = pod(dev)["spec"]["initContainers"][0]
    assert init["command"][:2] == ["python", f"{jupyter.CONFIG_DIR}/{jupyter.TOKEN_SCRIPT}"]
    compile(data[jupyter.TOKEN_SCRIPT], jupyter.TOKEN_SCRIPT, "exec")  # the shipped script is whole


def test_jupyter_setup_gives_the_three_steps(dev):
    lines = dev.exports["jupyterSetup"].splitlines()
    assert lines[0].startswith("kubectl -n adask-dev port-forward svc/dask-notebook 8888:8888")
    assert "get secret dask-notebook-token" in lines[1] and "base64 -d" in lines[1]
    assert "http://localhost:8888/lab" in lines[2]


# ---------------------------------------------------------------- the init container's script


class FakeSecret:
    """A Secret on an API server: resourceVersion checked on patch (409 on a stale one)."""

    def __init__(self, data: dict | None = None, race: str | None = None) -> None:
        self.data, self.version, self.race, self.patches = dict(data or {}), 1, race, 0

    def get(self) -> dict:
        return {"metadata": {"resourceVersion": str(self.version)}, "data": dict(self.data)}

    def patch(self, body: dict) -> dict:
        self.patches += 1
        if self.race is not None:  # another pod filled it between our read and our patch
            self.data, self.version, self.race = {"token": self.race}, self.version + 1, None
        if body["metadata"]["resourceVersion"] != str(self.version):
            raise jupyter_token.Conflict
        self.data.update(body["data"])
        self.version += 1
        return self.get()


def test_an_empty_secret_is_filled_once_with_a_fresh_token():
    secret = FakeSecret()
    token = jupyter_token.ensure_token(secret.get, secret.patch, "token")
    assert len(token) >= 43 and base64.b64decode(secret.data["token"]).decode() == token
    assert jupyter_token.ensure_token(secret.get, secret.patch, "token") == token
    assert secret.patches == 1
    other = FakeSecret()
    assert jupyter_token.ensure_token(other.get, other.patch, "token") != token


def test_a_concurrent_writer_wins_and_its_token_is_used():
    theirs = base64.b64encode(b"their-token").decode()
    secret = FakeSecret(race=theirs)
    assert jupyter_token.ensure_token(secret.get, secret.patch, "token") == "their-token"


def test_the_token_file_is_private_without_newline_and_replaced(tmp_path):
    path = tmp_path / "token"
    jupyter_token.write_private(path, "first")
    jupyter_token.write_private(path, "second")  # an init container run again on the same emptyDir
    assert path.read_text() == "second"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o400


@pytest.mark.parametrize("stack", stack_names())
def test_the_stock_image_stops_the_program_before_anything_is_registered(stack):
    """The stock image has no JupyterLab: the notebook pod would crash-loop, so no stack gets that far."""
    from testbed.infra.harness import RecordingMocks, registered_before_failure

    on_stock = json.loads(builders.jupyter_overrides(stack)[builders.DASK_KEY])
    on_stock.pop("image")  # back to the default: the stock Dask image
    error, registered = registered_before_failure(
        stack,
        RecordingMocks(),
        {**builders.jupyter_overrides(stack), builders.DASK_KEY: json.dumps(on_stock)},
    )
    assert error.key == "adaptive-dask:dask.jupyter.enabled" and "jupyter-server-proxy" in error.allowed
    assert registered == []
