"""Mutual TLS with real processes (issue 12 §1): a `--protocol tls` scheduler with the preload, real
local workers it starts, a client with the cluster's certificate, and the strangers it must refuse.

The scheduler's certificate names only the service DNS name, as in the pods, and every client here
connects to `tls://localhost:<port>`, as through `kubectl port-forward`: distributed verifies the chain
and not the hostname (security.py sets `check_hostname = False`), which these tests prove.
"""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client, Security

from dask_adaptive.backends.base import BackendUnavailable
from dask_adaptive.backends.local import materialize, worker_tls
from dask_adaptive.command import WorkerTls, worker_command
from testbed import pki
from testbed.dask.procs import alive, env, scheduler, wait_for

SERVICE = "dask-scheduler.tls-test.svc.cluster.local"


def pause(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


# ----------------------------------------------------------------------------- pure parts
def test_worker_command_carries_tls_flags_only_when_given():
    base = dict(name="w", nthreads=1, memory_limit="1GiB", dashboard_address=":0", local_directory="/x")
    plain = worker_command("tls://s:8786", **base)
    assert not any(a.startswith("--tls") for a in plain)
    flags = worker_command("tls://s:8786", **base, tls=WorkerTls("/ca", "/crt", "/key"))
    assert flags == [*plain, "--tls-ca-file", "/ca", "--tls-cert", "/crt", "--tls-key", "/key"]
    no_key = worker_command("tls://s:8786", **base, tls=WorkerTls("/ca", "/both.pem"))
    assert no_key[-4:] == ["--tls-ca-file", "/ca", "--tls-cert", "/both.pem"]


def test_worker_tls_prefers_the_worker_role_then_the_schedulers():
    both = Security(
        tls_ca_file="/ca",
        tls_worker_cert="/w.crt",
        tls_worker_key="/w.key",
        tls_scheduler_cert="/s.crt",
        tls_scheduler_key="/s.key",
    )
    assert worker_tls("tls://h:1", both) == WorkerTls("/ca", "/w.crt", "/w.key")
    scheduler_only = Security(tls_ca_file="/ca", tls_scheduler_cert="/s.crt", tls_scheduler_key="/s.key")
    assert worker_tls("tls://h:1", scheduler_only) == WorkerTls("/ca", "/s.crt", "/s.key")
    # a tcp:// scheduler: TLS flags would make the worker require encryption and refuse it
    assert worker_tls("tcp://h:1", both) is None
    assert worker_tls("tls://h:1", None) is None
    with pytest.raises(BackendUnavailable, match="no CA file and certificate"):
        worker_tls("tls://h:1", Security(tls_ca_file="/ca", require_encryption=True))


def test_in_memory_certificates_are_written_private(tmp_path: Path):
    ca = pki.make_ca()
    leaf = pki.make_leaf(ca, "w")
    written = materialize(WorkerTls(ca.cert, leaf.cert, leaf.key), str(tmp_path))
    assert written == WorkerTls(
        str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
    )
    assert Path(written.cert).read_text() == leaf.cert and Path(written.key or "").read_text() == leaf.key
    assert stat.S_IMODE(os.stat(written.key or "").st_mode) == 0o600
    paths = WorkerTls("/ca", "/crt", None)
    assert materialize(paths, str(tmp_path)) == paths, "paths are passed through"


# ----------------------------------------------------------------------------- real processes
def refused_without_certificate(address: str, ca_file: Path) -> str:
    """A raw TLS connection that trusts the CA but presents no certificate; returns the server's refusal."""
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=10) as raw, ctx.wrap_socket(raw) as conn:
        try:  # TLS 1.3: the client's side of the handshake ends first; the server's alert comes next
            conn.sendall(b"hello")
            data = conn.recv(16)
        except (ssl.SSLError, ConnectionError) as e:
            return str(e)  # the alert, or the EOF when the close overtakes it
    assert data == b"", f"{address} answered a client without a certificate: {data!r}"
    return "closed"


STRANGER = """
import sys
from distributed import Client, Security
address, ca, cert, key = sys.argv[1:]
given = {"tls_ca_file": ca, "tls_client_cert": cert, "tls_client_key": key}
security = Security(require_encryption=False, **{k: v for k, v in given.items() if v})
try:
    Client(address, security=security, timeout=5)
except Exception as e:
    print(f"refused: {type(e).__name__}: {e}")
else:
    print("connected")
"""


def stranger_client(
    address: str, ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> str:
    """`Client(address)` in a fresh process with this (partial) security; returns how it ended."""
    argv = [sys.executable, "-c", STRANGER, address, *(str(p or "") for p in (ca, cert, key))]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env()).stdout
    assert out.startswith("refused: "), f"{address} let a stranger in: {out!r}"
    return out


@pytest.mark.parametrize("configured_by", ["flags", "env"])
def test_tls_scheduler_scales_real_workers_and_refuses_strangers(tmp_path: Path, configured_by: str):
    ca, other = pki.make_ca("cluster-ca"), pki.make_ca("another-ca")
    cluster = pki.write_tls_files(tmp_path / "cluster", ca, pki.make_service_leaf(ca, "dask", (SERVICE,)))
    _, user_key = pki.private_key_pem()  # the users' certificate of the stack: client auth only
    user_leaf = pki.Pem(pki.sign_leaf(ca, pki.public_key_of(user_key), "user", server=False), user_key)
    user = pki.write_tls_files(tmp_path / "user", ca, user_leaf)
    stranger = pki.write_tls_files(tmp_path / "stranger", other, pki.make_leaf(other, "stranger"))

    options = ["--protocol", "tls", "--backend", "local", "--min-workers", "0", "--max-workers", "3"]
    options += ["--interval", "200ms", "--scale-down-delay", "3s", "--worker-memory-limit", "512MiB"]
    # flags: the pods' layout, whose nanny port must refuse strangers too; env: the local default
    nanny = configured_by == "flags"
    options += ["--worker-nanny", str(nanny).lower()]
    extra_env: dict[str, str] = {}
    if configured_by == "flags":  # no DASK_* in the environment: only the scheduler's Security has them
        options += ["--tls-ca-file", str(cluster.ca_file), "--tls-cert", str(cluster.cert)]
        options += ["--tls-key", str(cluster.key)]
    else:  # the pods' contract: every role's certificate and require-encryption from the environment
        extra_env = cluster.env()

    good = Security(
        tls_ca_file=str(user.ca_file),
        tls_client_cert=str(user.cert),
        tls_client_key=str(user.key),
        require_encryption=True,
    )
    with scheduler(tmp_path, *options, extra_env=extra_env) as s:
        assert s.address.startswith("tls://127.0.0.1:")
        port = s.address.rsplit(":", 1)[1]
        local = f"tls://localhost:{port}"  # the certificate does not name localhost

        with Client(local, security=good, timeout=30) as client:
            futures = client.map(pause, [0.5] * 12, pure=False)
            peak = 0

            def done() -> bool:
                nonlocal peak
                peak = max(peak, len(client.scheduler_info(n_workers=-1)["workers"]))
                return all(f.done() for f in futures)

            wait_for(done, 120, "the workload on TLS workers", every=0.2)
            assert client.gather(futures) == [0.5] * 12
            assert peak >= 2, "the preload scaled out real workers"
            info = client.scheduler_info(n_workers=-1)["workers"]
            assert info and all(a.startswith("tls://") for a in info), "workers listen on TLS"
            nannies = [w["nanny"] for w in info.values()]
            assert all(n.startswith("tls://") for n in nannies) if nanny else nannies == [None] * len(info)
            worker_address = next(iter(info))

            # strangers, each refused by the server itself (its log names why)
            refusals = {
                "no certificate (scheduler)": refused_without_certificate(local, user.ca_file),
                "no certificate (worker)": refused_without_certificate(worker_address, user.ca_file),
            }
            if nanny:
                refusals["no certificate (nanny)"] = refused_without_certificate(nannies[0], user.ca_file)
            assert all(refusals.values()), refusals  # each one closed before a byte of Dask
            # dask clients in their own processes (a failed Client start can wedge the sync Client's
            # shared loop in this one): without a certificate, another CA's, plain tcp
            assert "TypeError: TLS expects a `ssl_context`" in stranger_client(local, user.ca_file)
            assert "CommClosedError" in stranger_client(local, user.ca_file, stranger.cert, stranger.key)
            assert "CommClosedError" in stranger_client(f"tcp://127.0.0.1:{port}")
            log = s.log_text()
            assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in log, "no certificate: refused by the scheduler"
            assert "certificate verify failed" in log, "another CA's certificate: refused by the scheduler"
            assert "WRONG_VERSION_NUMBER" in log, "plain tcp: refused by the scheduler"

            # the scheduler and its workers are unharmed: the same client works on
            assert alive(s.process.pid)
            assert client.submit(pause, 0.1, pure=False).result(timeout=60) == 0.1
        # and a new client with the right certificate still gets in
        with Client(local, security=good, timeout=30) as again:
            assert again.submit(pause, 0.0, pure=False).result(timeout=60) == 0.0
