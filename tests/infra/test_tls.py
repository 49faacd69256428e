"""Mutual TLS (issue 12 §1), offline: config, the certificates the program makes, and how pods use them.

The mocks answer pulumi-tls resources with real PEMs built from the program's own inputs (subject, SANs,
allowed uses), so the chain, the usages and a real TLS handshake through distributed's `Security` are
checked on exactly what the stack would put in its Secrets.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from distributed.security import Security

from infra.errors import ConfigError
from infra.k8s import dask_objects as kd
from infra.k8s import tls, tls_mount
from tests import pki
from tests.infra import builders
from tests.infra.harness import Graph, Node

SECRET = "kubernetes:core/v1:Secret"
AWS_STACKS = ("dev", "prod")


def secrets(g: Graph) -> dict[str, dict[str, str]]:
    return {n.inputs["metadata"]["name"]: n.inputs["stringData"] for n in g.of_type(SECRET)}


def secret_node(g: Graph, name: str) -> Node:
    [node] = [n for n in g.of_type(SECRET) if n.inputs["metadata"]["name"] == name]
    return node


def template(g: Graph, component: str) -> dict:
    [node] = [
        n
        for n in g.of_type("kubernetes:apps/v1:Deployment")
        if n.inputs["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return node.inputs["spec"]["template"]


def cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def usages(c: x509.Certificate) -> set:
    return set(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def sans(c: x509.Certificate) -> list[str]:
    try:
        ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(ext.get_values_for_type(x509.DNSName))


# ---------------------------------------------------------------- config


def test_tls_is_on_by_default_and_may_be_off_outside_production():
    assert builders.dask(None, target="local").tls is True
    assert builders.dask({"tls": False}, target="local").tls is False
    assert builders.dask({"tls": "false"}, target="local").tls is False  # the CLI hands strings


def test_tls_off_is_refused_in_production():
    with pytest.raises(ConfigError) as caught:
        builders.dask({"tls": False}, target="local", production=True)
    assert caught.value.key == "adaptive-dask:dask.tls"
    assert "production" in str(caught.value) and "False" in str(caught.value)


@pytest.mark.parametrize(
    ("groups", "bad_key"),
    [
        (["system:masters"], "adaptive-dask:dask.clientGroups[0]"),
        (["  "], "adaptive-dask:dask.clientGroups[0]"),
        (["a", "a"], "adaptive-dask:dask.clientGroups"),
        ("data-team", "adaptive-dask:dask.clientGroups"),
    ],
)
def test_client_groups_are_named_groups_of_your_own(groups, bad_key):
    with pytest.raises(ConfigError) as caught:
        builders.dask({"clientGroups": groups}, target="local")
    assert caught.value.key == bad_key


# ---------------------------------------------------------------- the certificates


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_cluster_certificate_serves_and_connects_for_every_scheduler_name(stack, stack_graph):
    g = stack_graph(stack)
    data = secrets(g)[tls_mount.CLUSTER_SECRET]
    ca, leaf = cert(data["ca.crt"]), cert(data["tls.crt"])
    leaf.verify_directly_issued_by(ca)
    ns = g.one("kubernetes:core/v1:Namespace").inputs["metadata"]["name"]
    names = kd.Names(namespace=ns)
    assert sans(leaf) == tls.scheduler_dns_names(names)
    assert names.scheduler_host in sans(leaf) and "dask-scheduler" in sans(leaf)
    assert usages(leaf) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_client_certificate_only_authenticates_a_client(stack, stack_graph):
    data = secrets(stack_graph(stack))
    client, cluster = data[tls_mount.CLIENT_SECRET], data[tls_mount.CLUSTER_SECRET]
    assert client["ca.crt"] == cluster["ca.crt"]  # one CA per stack
    leaf = cert(client["tls.crt"])
    leaf.verify_directly_issued_by(cert(client["ca.crt"]))
    assert usages(leaf) == {ExtendedKeyUsageOID.CLIENT_AUTH}  # cannot impersonate the scheduler
    assert sans(leaf) == []
    assert client["tls.key"] != cluster["tls.key"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_each_key_matches_its_certificate_and_is_a_secret(stack, stack_graph):
    g = stack_graph(stack)
    for name, data in secrets(g).items():
        key = serialization.load_pem_private_key(data["tls.key"].encode(), password=None)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        pem = serialization.Encoding.PEM
        assert key.public_key().public_bytes(pem, spki) == cert(data["tls.crt"]).public_key().public_bytes(
            pem, spki
        ), name
        node = secret_node(g, name)
        assert node.inputs["type"] == "kubernetes.io/tls"
        assert "stringData" in node.secret_inputs, name  # never in plain text in the state
    keys = [n for n in g.nodes if n.type == "tls:index/privateKey:PrivateKey"]
    assert {n.inputs["algorithm"] for n in keys} == {"ECDSA"}
    assert {n.inputs["ecdsaCurve"] for n in keys} == {"P256"}


def test_validity_and_early_renewal_rotate_before_expiry(stack_graph):
    g = stack_graph("prod")
    [ca] = g.of_type("tls:index/selfSignedCert:SelfSignedCert")
    leaves = g.of_type("tls:index/locallySignedCert:LocallySignedCert")
    assert ca.inputs["isCaCertificate"] is True
    assert ca.inputs["validityPeriodHours"] > ca.inputs["earlyRenewalHours"] >= 30 * 24
    assert len(leaves) == 2
    for leaf in leaves:
        # a leaf is renewed well before it (and before the CA) expires
        assert leaf.inputs["validityPeriodHours"] > leaf.inputs["earlyRenewalHours"] >= 30 * 24
        assert (
            leaf.inputs["validityPeriodHours"]
            <= ca.inputs["validityPeriodHours"] - ca.inputs["earlyRenewalHours"]
        )


# ---------------------------------------------------------------- pods


@pytest.mark.parametrize("stack", ("dev", "prod", "local"))
def test_dask_pods_speak_tls_with_the_cluster_secret_only(stack, stack_graph):
    g = stack_graph(stack)
    ns = g.one("kubernetes:core/v1:Namespace").inputs["metadata"]["name"]
    rollouts = set()
    for component in ("scheduler", "worker"):
        t = template(g, component)
        spec = t["spec"]
        [c] = spec["containers"]
        [vol] = [v for v in spec["volumes"] if "secret" in v]
        assert vol["secret"] == {"secretName": tls_mount.CLUSTER_SECRET, "defaultMode": 0o440}
        assert {"name": vol["name"], "mountPath": "/etc/dask-tls", "readOnly": True} in c["volumeMounts"]
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
        assert env["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"] == "/etc/dask-tls/ca.crt"
        for role in ("SCHEDULER", "WORKER", "CLIENT"):
            assert env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__CERT"] == "/etc/dask-tls/tls.crt"
            assert env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__KEY"] == "/etc/dask-tls/tls.key"
        rollouts.add(t["metadata"]["annotations"][tls_mount.ROLLOUT_ANNOTATION])
    data = secrets(g)[tls_mount.CLUSTER_SECRET]
    assert rollouts == {tls.fingerprint(data["ca.crt"], data["tls.crt"])}  # a new cert rolls both
    scheduler = template(g, "scheduler")["spec"]["containers"][0]["command"]
    assert scheduler[scheduler.index("--protocol") + 1] == "tls"
    worker = template(g, "worker")["spec"]["containers"][0]["command"]
    assert worker[2] == f"tls://dask-scheduler.{ns}.svc.cluster.local:8786"
    # no pod of the stack mounts the users' certificate
    mounted = json.dumps([template(g, c)["spec"]["volumes"] for c in ("scheduler", "worker")])
    assert tls_mount.CLIENT_SECRET not in mounted


def test_plaintext_stack_has_no_certificates_and_says_so(stack_graph):
    g = stack_graph("local", overrides={"adaptive-dask:dask": json.dumps({"tls": False})})
    assert not [n for n in g.nodes if n.type.startswith("tls:") or n.type == "pulumi:providers:tls"]
    assert g.of_type(SECRET) == []
    for component in ("scheduler", "worker"):
        spec = template(g, component)["spec"]
        assert not [v for v in spec["volumes"] if "secret" in v]
        assert not [e for e in spec["containers"][0]["env"] if "TLS" in e["name"]]
    assert "--protocol" not in template(g, "scheduler")["spec"]["containers"][0]["command"]
    assert g.exports["daskSchedulerAddress"].startswith("tcp://")
    assert "plaintext" in g.exports["daskClientSetup"]


def test_client_role_reads_only_the_client_secret_and_binds_only_configured_groups(stack_graph):
    g = stack_graph("local")
    [role] = [n for n in g.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role") if "client" in n.name]
    rules = role.inputs["rules"]
    [secret_rule] = [r for r in rules if "secrets" in r["resources"]]
    assert secret_rule == {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": [tls_mount.CLIENT_SECRET],
        "verbs": ["get"],
    }
    assert {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["create"]} in rules
    assert "*" not in json.dumps(rules)
    bindings = g.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    assert [b for b in bindings if "client" in b.name] == []  # no groups configured: nobody but admins

    g = stack_graph("local", overrides={"adaptive-dask:dask": json.dumps({"clientGroups": ["data-team"]})})
    [binding] = [
        b for b in g.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding") if "client" in b.name
    ]
    assert binding.inputs["roleRef"]["name"] == role.inputs["metadata"]["name"]
    assert binding.inputs["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "data-team"}
    ]


# ---------------------------------------------------------------- a real handshake, as distributed does it


def _write(directory: Path, data: dict[str, str]) -> pki.TlsFiles:
    return pki.write_tls_files(
        directory, pki.Pem(data["ca.crt"], ""), pki.Pem(data["tls.crt"], data["tls.key"])
    )


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str | None:
    """Run one TLS handshake over a socket pair; None on success, else the side's error."""
    a, b = socket.socketpair()
    errors: list[str] = []

    def serve() -> None:
        try:
            with server.wrap_socket(a, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as e:
            errors.append(f"server: {e}")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(b, server_hostname="localhost") as c:
            c.sendall(b"x")
    except (ssl.SSLError, OSError) as e:
        errors.append(f"client: {e}")
    thread.join(10)
    a.close()
    b.close()
    return errors[0] if errors else None


def _contexts(files: pki.TlsFiles, role: str) -> Security:
    return Security(
        require_encryption=True,
        tls_ca_file=str(files.ca_file),
        **{f"tls_{role}_cert": str(files.cert), f"tls_{role}_key": str(files.key)},
    )


def test_distributed_accepts_the_program_certificates_and_nothing_else(stack_graph, tmp_path):
    """The stack's Secrets, loaded by distributed's own `Security` (which skips hostname checks, so
    `tls://localhost` through a port-forward works): the client certificate reaches the scheduler; one from
    another CA, or none, does not."""
    data = secrets(stack_graph("dev"))
    cluster = _write(tmp_path / "cluster", data[tls_mount.CLUSTER_SECRET])
    client = _write(tmp_path / "client", data[tls_mount.CLIENT_SECRET])
    listen = _contexts(cluster, "scheduler").get_listen_args("scheduler")["ssl_context"]
    ok = _contexts(client, "client").get_connection_args("client")["ssl_context"]
    assert _handshake(listen, ok) is None

    other_ca = pki.make_ca("someone-else")
    stranger = pki.write_tls_files(tmp_path / "stranger", other_ca, pki.make_leaf(other_ca, "x"))
    forged = _contexts(stranger, "client").get_connection_args("client")["ssl_context"]
    assert _handshake(listen, forged) is not None

    anonymous = ssl.create_default_context(cafile=str(cluster.ca_file))
    anonymous.check_hostname = False
    assert _handshake(listen, anonymous) is not None  # no client certificate: refused


def test_client_config_reads_the_secret_the_program_writes():
    """One contract, two sides: the users' command (no infra import: it runs on laptops) names the
    Secret and keys the program creates."""
    from dask_adaptive import client_config

    assert client_config.SECRET == tls_mount.CLIENT_SECRET
    assert client_config.KEYS == (tls_mount.CA_FILE, tls_mount.CERT_FILE, tls_mount.KEY_FILE)
