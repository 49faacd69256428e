"""Mutual TLS (issue 12 §1), offline: config, the certificates the program makes, and how pods use them.

The mocks answer pulumi-tls resources with real PEMs built from the program's own inputs (subject, SANs,
allowed uses), so the chain, the usages and a real TLS handshake through distributed's `Security` are
checked on exactly what the stack would put in its Secrets.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
from pathlib import Path

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from distributed.comm import Comm, CommClosedError, connect, listen
from distributed.security import Security

from infra.errors import ConfigError
from infra.k8s import dask_objects as kd
from infra.k8s import tls, tls_mount
from testbed import pki
from testbed.infra import builders
from testbed.infra.harness import Graph, Node, run_stack

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


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_validity_and_early_renewal_rotate_before_expiry(stack, stack_graph):
    g = stack_graph(stack)
    [ca] = g.of_type("tls:index/selfSignedCert:SelfSignedCert")
    leaves = {
        n.name.rsplit("-", 2)[-2]: n for n in g.of_type("tls:index/locallySignedCert:LocallySignedCert")
    }
    assert ca.inputs["isCaCertificate"] is True
    assert (ca.inputs["validityPeriodHours"], ca.inputs["earlyRenewalHours"]) == (5 * 365 * 24, 180 * 24)
    assert set(leaves) == {"cluster", "client"}
    # the users' certificate: 30 days, so a copy kept after leaving clientGroups dies within a month;
    # renewed by any `up` in its last 20 days (a fetched copy has >= 20 days left)
    client = leaves["client"].inputs
    assert (client["validityPeriodHours"], client["earlyRenewalHours"]) == (720, 480)
    # the cluster's certificate keeps a year: renewing it restarts the scheduler
    cluster = leaves["cluster"].inputs
    assert (cluster["validityPeriodHours"], cluster["earlyRenewalHours"]) == (365 * 24, 60 * 24)
    for leaf in leaves.values():
        # a leaf is renewed before it (and before the CA) expires
        assert 0 < leaf.inputs["earlyRenewalHours"] < leaf.inputs["validityPeriodHours"]
        assert (
            leaf.inputs["validityPeriodHours"]
            <= ca.inputs["validityPeriodHours"] - ca.inputs["earlyRenewalHours"]
        )


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_keys_and_certificates_are_made_only_once_the_cluster_serves_the_namespace(stack, stack_graph):
    """Issue 20 A6: made at the start of a first `up` that then fails (or stops at the cluster), a
    certificate's year would start long before the deploy that uses it."""
    g = stack_graph(stack)
    [namespace] = g.of_type("kubernetes:core/v1:Namespace")
    [cluster] = g.of_type("aws:eks/cluster:Cluster")
    made = [n for n in g.nodes if n.type.startswith("tls:index/")]
    assert len(made) == 8  # 3 keys, the CA, 2 certificate requests, 2 leaves
    for node in made:
        assert g.depends_on(node, namespace) and g.depends_on(node, cluster), node.name


# The resource docs/security.md "Revocation" tells operators to replace (`pulumi up --replace <urn>`),
# for prod.
PROD_CA_KEY_URN = (
    "urn:pulumi:prod::adaptive-dask::adaptive-dask:kubernetes:DaskCluster"
    "$tls:index/privateKey:PrivateKey::adask-prod-dask-ca-key"
)


def test_replacing_the_ca_key_replaces_every_key(stack_graph):
    """Revocation is `pulumi up --replace <the CA key's URN>`: the CA certificate and both leaves take the
    key as an input (so they are re-issued), and both leaf keys name it in `replace_with` (so they are
    new too: the old client key, or a cluster key a task copied, must not get a fresh certificate)."""
    g = stack_graph("prod")
    keys = {n.urn: n for n in g.of_type("tls:index/privateKey:PrivateKey")}
    assert PROD_CA_KEY_URN in keys and len(keys) == 3
    ca_key = keys.pop(PROD_CA_KEY_URN)
    assert list(ca_key.request.replace_with) == []
    for leaf_key in keys.values():
        assert list(leaf_key.request.replace_with) == [PROD_CA_KEY_URN], leaf_key.name
    [ca] = g.of_type("tls:index/selfSignedCert:SelfSignedCert")
    assert ca.inputs["privateKeyPem"] == ca_key.state["privateKeyPem"]
    for leaf in g.of_type("tls:index/locallySignedCert:LocallySignedCert"):
        assert leaf.inputs["caPrivateKeyPem"] == ca_key.state["privateKeyPem"]
        assert leaf.inputs["caCertPem"] == ca.state["certPem"]


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


# -------------------------------------------------- revocation: a new CA, over distributed's comm


def _dask_exchange(server: Security, client: Security) -> str:
    """One message over distributed's own TLS comm on loopback (its listener, its connector, the contexts
    `Security` makes); "ok" when the scheduler side got it, else how the client was refused."""

    async def run() -> str:
        received: list[object] = []

        async def handle(comm: Comm) -> None:
            received.append(await comm.read())
            await comm.write("pong")
            await comm.close()

        listener = await listen("tls://127.0.0.1:0", handle, **server.get_listen_args("scheduler"))
        try:
            comm = await connect(listener.contact_address, timeout=3, **client.get_connection_args("client"))
            await comm.write("ping")
            reply = await comm.read()
            await comm.close()
        except (CommClosedError, OSError) as e:
            assert received == [], "the scheduler side must never see a message from a refused client"
            return f"refused: {type(e).__name__}: {e}"
        finally:
            listener.stop()
        assert (received, reply) == (["ping"], "pong")
        return "ok"

    loop = asyncio.new_event_loop()  # not the test's loop, which belongs to the Pulumi runtime
    try:
        return loop.run_until_complete(asyncio.wait_for(run(), 60))
    finally:
        loop.close()


def test_after_the_ca_is_replaced_the_old_client_certificate_is_refused(stack_graph, tmp_path):
    """docs/security.md "Revocation": replacing the CA's key makes a new CA and new certificates (what a
    second run of the program makes: the mocks generate keys as the provider does). A scheduler on the new
    material refuses a client holding the old client certificate and accepts the new one; and a CA
    *certificate* re-issued for the old key would have let the old client in, so replacing the
    certificate alone is not revocation."""
    before = secrets(stack_graph("dev"))
    try:
        after_graph = run_stack("dev")  # a fresh run: new keys, new CA
    finally:
        pulumi.runtime.set_all_config({})
        pulumi.runtime.reset_options()
    after = secrets(after_graph)
    assert after[tls_mount.CLIENT_SECRET]["ca.crt"] != before[tls_mount.CLIENT_SECRET]["ca.crt"]

    new_cluster = _write(tmp_path / "new-cluster", after[tls_mount.CLUSTER_SECRET])
    new_client = _write(tmp_path / "new-client", after[tls_mount.CLIENT_SECRET])
    old_client = _write(tmp_path / "old-client", before[tls_mount.CLIENT_SECRET])
    scheduler = _contexts(new_cluster, "scheduler")

    assert _dask_exchange(scheduler, _contexts(new_client, "client")) == "ok"
    # the old certificate, presented with the new CA to check the scheduler by (what a user who kept
    # the old files and fetched the public CA would do) and with the old CA (the files as they were)
    old_with_new_ca = Security(
        require_encryption=True,
        tls_ca_file=str(new_client.ca_file),
        tls_client_cert=str(old_client.cert),
        tls_client_key=str(old_client.key),
    )
    refused = _dask_exchange(scheduler, old_with_new_ca)
    # the scheduler's alert: the old certificate's signature does not verify with the new CA
    assert refused.startswith("refused: CommClosedError") and "SSLError" in refused, refused
    as_kept = _dask_exchange(scheduler, _contexts(old_client, "client"))  # both sides refuse: other CAs
    assert as_kept.startswith("refused: ") and "certificate" in as_kept, as_kept

    # why the key must go: the old CA's key re-signing a CA certificate (same name) trusts the old client
    g = stack_graph("dev")
    [ca_key] = [n for n in g.of_type("tls:index/privateKey:PrivateKey") if n.name.endswith("-ca-key")]
    [ca] = g.of_type("tls:index/selfSignedCert:SelfSignedCert")
    old_name = cert(ca.state["certPem"]).subject.rfc4514_string().removeprefix("CN=")
    reissued = pki.make_ca(old_name, key_pem=ca_key.state["privateKeyPem"])
    assert reissued.cert != ca.state["certPem"]
    same_key = pki.write_tls_files(tmp_path / "same-key", reissued, pki.make_service_leaf(reissued, "s", ()))
    assert _dask_exchange(_contexts(same_key, "scheduler"), _contexts(old_client, "client")) == "ok"
