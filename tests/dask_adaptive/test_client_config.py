"""`python -m dask_adaptive client-config` (issue 12 §1): the laptop's way into a TLS stack.

The end-to-end test reads the client Secret from the real control plane through a kubeconfig holding a
ServiceAccount token with exactly `get` on that Secret, then a client in a fresh process, configured by
nothing but the written folder (DASK_CONFIG), reaches a `--protocol tls` scheduler on localhost whose
certificate names only `dask-scheduler.<ns>.svc.cluster.local`, as through `kubectl port-forward`.
"""

from __future__ import annotations

import base64
import stat
import subprocess
import sys
from pathlib import Path

import dask.config
import pytest

from dask_adaptive.__main__ import main as cli
from dask_adaptive.client_config import (
    CONFIG_NAME,
    ClientConfigError,
    ClientTls,
    dask_config_yaml,
    decode_secret,
    default_folder,
    write_files,
)
from testbed import pki
from testbed.dask.procs import REPO, env, scheduler

CLIENT = """
import sys
from distributed import Client
try:
    client = Client(sys.argv[1], timeout=10)
except Exception as e:
    print(f"refused: {type(e).__name__}: {e}")
else:
    print("answer", client.submit(sum, [20, 22]).result(timeout=120))
    client.close()
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def client_secret(ca: pki.Pem, leaf: pki.Pem) -> dict[str, str]:
    return {"ca.crt": b64(ca.cert), "tls.crt": b64(leaf.cert), "tls.key": b64(leaf.key)}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----------------------------------------------------------------------------- pure parts and files
def test_decode_secret_names_what_is_missing_or_malformed():
    ca = pki.make_ca()
    leaf = pki.make_leaf(ca, "user")
    good = client_secret(ca, leaf)
    assert decode_secret(good, "ns/s") == ClientTls(ca.cert, leaf.cert, leaf.key)
    with pytest.raises(ClientConfigError, match=r"ns/s lacks ca.crt, tls.key \(it has: tls.crt\)"):
        decode_secret({"tls.crt": good["tls.crt"]}, "ns/s")
    with pytest.raises(ClientConfigError, match=r"lacks ca.crt, tls.crt, tls.key \(it has: no data"):
        decode_secret(None, "ns/s")
    with pytest.raises(ClientConfigError, match=r"tls\.key is not PEM"):
        decode_secret(good | {"tls.key": b64("not a key")}, "ns/s")
    with pytest.raises(ClientConfigError, match=r"ca\.crt is not base64"):
        decode_secret(good | {"ca.crt": "%%%"}, "ns/s")


def test_an_existing_folder_keeps_its_mode_and_the_files_are_private(tmp_path: Path):
    """Issue 20 C14: an existing `--output-dir` (a project folder, a shared one) keeps its mode."""
    ca = pki.make_ca()
    leaf = pki.make_leaf(ca, "user")
    folder = tmp_path / "project"
    folder.mkdir()
    folder.chmod(0o755)
    write_files(folder, ClientTls(ca.cert, leaf.cert, leaf.key), dask_config_yaml(folder, "ns", "ctx"))
    assert mode(folder) == 0o755
    assert {p.name: mode(p) for p in folder.iterdir()} == dict.fromkeys(
        ["ca.crt", "tls.crt", "tls.key", CONFIG_NAME], 0o600
    )


def test_written_folder_is_private_and_is_dask_config(tmp_path: Path):
    ca = pki.make_ca()
    leaf = pki.make_leaf(ca, "user")
    folder = tmp_path / "out"
    write_files(folder, ClientTls(ca.cert, leaf.cert, leaf.key), dask_config_yaml(folder, "ns", "ctx"))
    assert mode(folder) == 0o700
    assert {p.name: mode(p) for p in folder.iterdir()} == dict.fromkeys(
        ["ca.crt", "tls.crt", "tls.key", CONFIG_NAME], 0o600
    ), "no temp file left, every file private"
    assert (folder / "tls.key").read_text() == leaf.key
    config = dask.config.collect([str(folder)], env={})
    assert dask.config.get("distributed.comm.tls", config=config) == {
        "ca-file": str(folder / "ca.crt"),
        "client": {"cert": str(folder / "tls.crt"), "key": str(folder / "tls.key")},
    }
    # plaintext stays possible for the user's other (local) clusters; the stack refuses it itself
    assert dask.config.get("distributed.comm.require-encryption", None, config=config) is None


def test_refresh_is_allowed_foreign_files_are_not(tmp_path: Path):
    ca = pki.make_ca()
    first, second = pki.make_leaf(ca, "user"), pki.make_leaf(ca, "user")
    folder = tmp_path / "out"
    yaml = dask_config_yaml(folder, "ns", "ctx")
    write_files(folder, ClientTls(ca.cert, first.cert, first.key), yaml)
    write_files(folder, ClientTls(ca.cert, second.cert, second.key), yaml)  # a rotation: replaced
    assert (folder / "tls.crt").read_text() == second.cert

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / CONFIG_NAME).write_text("distributed: {}\n")
    (theirs / "ca.crt").write_text("their CA")
    with pytest.raises(ClientConfigError, match=f"holds ca.crt, {CONFIG_NAME} not written by client-config"):
        write_files(theirs, ClientTls(ca.cert, first.cert, first.key), yaml)
    assert (theirs / "ca.crt").read_text() == "their CA", "untouched"
    write_files(theirs, ClientTls(ca.cert, first.cert, first.key), yaml, force=True)
    assert (theirs / "ca.crt").read_text() == ca.cert


def test_a_key_of_another_certificate_is_refused_before_anything_is_written(tmp_path: Path):
    ca = pki.make_ca()
    a, b = pki.make_leaf(ca, "a"), pki.make_leaf(ca, "b")
    folder = tmp_path / "out"
    with pytest.raises(ClientConfigError, match="does not load"):
        write_files(folder, ClientTls(ca.cert, a.cert, b.key), dask_config_yaml(folder, "ns", "ctx"))
    assert list(folder.iterdir()) == []


def test_default_folder_is_per_context_and_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    eks = "arn:aws:eks:eu-west-1:123456789012:cluster/adask-dev"
    assert (
        default_folder(eks, "dask")
        == tmp_path
        / ".config/dask-adaptive"
        / ("arn_aws_eks_eu-west-1_123456789012_cluster_adask-dev")
        / "dask"
    )


def test_unreachable_api_server_and_missing_kubeconfig_are_named(tmp_path: Path, capsys):
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "current-context: c\n"
    )
    assert (
        cli(["client-config", "-n", "ns", "--kubeconfig", str(kc), "--output-dir", str(tmp_path / "o")]) == 2
    )
    assert "cannot reach the Kubernetes API at https://127.0.0.1:1 (context c)" in capsys.readouterr().err
    assert cli(["client-config", "-n", "ns", "--kubeconfig", str(kc), "--context", "nope"]) == 2
    assert "has no context 'nope'" in capsys.readouterr().err
    assert cli(["client-config", "-n", "ns", "--kubeconfig", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- the real control plane
def _user_with_get_on(kube, namespace: str, secret: str, name: str = "laptop-user") -> str:
    """A ServiceAccount allowed exactly `get` on one Secret: the least a cluster's user needs."""
    rest = kube.rest()
    kube.create_service_account(namespace, name)
    rest.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        {
            "metadata": {"name": name},
            "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret], "verbs": ["get"]}
            ],
        },
    )
    rest.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )
    return kube.service_account_token(namespace, name)


def _post_secret(kube, namespace: str, name: str, data: dict[str, str], kind: str) -> None:
    body = {"metadata": {"name": name}, "type": kind, "data": data}
    kube.rest().post(f"/api/v1/namespaces/{namespace}/secrets", body)


@pytest.mark.kube
def test_client_config_from_the_cluster_connects_through_localhost(kube, namespace: str, tmp_path: Path):
    service = f"dask-scheduler.{namespace}.svc.cluster.local"
    ca = pki.make_ca("stack-ca")
    _, key = pki.private_key_pem()  # like the stack's: ECDSA P-256, client auth only
    user = pki.Pem(pki.sign_leaf(ca, pki.public_key_of(key), "dask-client", server=False), key)
    _post_secret(kube, namespace, "dask-client-tls", client_secret(ca, user), "kubernetes.io/tls")
    token = _user_with_get_on(kube, namespace, "dask-client-tls")
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", token)  # context "t"
    home = tmp_path / "home"
    home.mkdir()

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dask_adaptive",
            "client-config",
            "-n",
            namespace,
            "--kubeconfig",
            str(kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env(HOME=str(home)),
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    folder = home / ".config" / "dask-adaptive" / "t" / namespace
    assert proc.stdout == f"export DASK_CONFIG={folder}\n", "stdout is only the line to eval"
    assert f"kubectl -n {namespace} port-forward svc/dask-scheduler 8786:8786" in proc.stderr
    assert mode(folder) == 0o700 and mode(folder / "tls.key") == 0o600

    # the scheduler of the stack: its certificate names only the service; reached through localhost
    cluster = pki.write_tls_files(tmp_path / "cluster", ca, pki.make_service_leaf(ca, "dask", (service,)))
    options = ["--protocol", "tls", "--tls-ca-file", str(cluster.ca_file), "--tls-cert", str(cluster.cert)]
    options += ["--tls-key", str(cluster.key), "--backend", "local", "--max-workers", "1"]
    options += ["--interval", "200ms", "--worker-memory-limit", "512MiB"]
    with scheduler(tmp_path, *options) as s:
        local = "tls://localhost:" + s.address.rsplit(":", 1)[1]

        def client(**extra: str) -> str:
            run = [sys.executable, "-c", CLIENT, local]
            return subprocess.run(
                run, capture_output=True, text=True, timeout=180, env=env(HOME=str(home), **extra)
            ).stdout

        assert client(DASK_CONFIG=str(folder)) == "answer 42\n"
        assert client().startswith("refused: "), "without the written config the client has no certificate"


@pytest.mark.kube
def test_client_config_errors_name_the_secret_and_the_fix(kube, namespace: str, tmp_path: Path, capsys):
    ca = pki.make_ca()
    leaf = pki.make_leaf(ca, "user")
    _post_secret(kube, namespace, "partial", {"tls.crt": b64(leaf.cert), "ca.crt": b64(ca.cert)}, "Opaque")
    admin = kube.kubeconfig(tmp_path / "admin", kube.admin_token)
    stranger = kube.kubeconfig(tmp_path / "stranger", _user_with_get_on(kube, namespace, "other", "stranger"))
    bad_token = kube.kubeconfig(tmp_path / "bad", "not-a-token")
    out = tmp_path / "out"

    def run(kubeconfig: Path, secret: str = "dask-client-tls") -> str:
        argv = ["client-config", "-n", namespace, "--secret", secret, "--kubeconfig", str(kubeconfig)]
        assert cli([*argv, "--output-dir", str(out)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "", "nothing to eval on failure"
        return captured.err

    assert f"Secret {namespace}/dask-client-tls not found (context t)" in run(admin)
    forbidden = run(stranger)
    assert f"forbidden to read Secret {namespace}/dask-client-tls" in forbidden
    assert f"`get` on secrets/dask-client-tls in namespace {namespace}" in forbidden
    assert "refused your credentials" in run(bad_token)
    assert f"Secret {namespace}/partial lacks tls.key (it has: ca.crt, tls.crt)" in run(admin, "partial")
    assert not out.exists(), "nothing written on any failure"
