"""The in-cluster notebook's runtime with real processes, no Kubernetes (issue 23 §1): a mutual-TLS
scheduler and worker, and a real `jupyter lab` started with exactly the stack's command line, config
files and environment (infra/k8s/jupyter_lab.py), driven through its REST API and kernel channels.
Only the port differs (0: a free one, as tests run concurrently), and, when the test runs as root (this
sandbox), jupyter is allowed root by testbed/dask/jupyter.py `root_override`.

The cluster (testbed/dask/tls_cluster.py) mirrors the pods': the scheduler's certificate names only its
Service; the lab holds the client certificate (client-auth only); the dashboard listens on its own
loopback address (standing for the scheduler's host), so the proxy's allow-list can be seen to refuse
the worker's dashboard on 127.0.0.1.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.k8s import jupyter_lab
from testbed.dask.jupyter import Lab
from testbed.dask.procs import wait_for
from testbed.dask.tls_cluster import DASHBOARD_HOST, TlsCluster, tls_cluster

COMPUTE = """
from distributed import Client
c = Client()
print(c.submit(lambda x: x + 1, 41).result(), c.dashboard_link)
print(c.scheduler.address)
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    with tls_cluster(tmp_path_factory.mktemp("tls-cluster")) as c:
        yield c


def scheduler_clients(cluster: TlsCluster) -> set[str]:
    """The ids of the clients the scheduler holds, this probe's own excluded."""
    with cluster.client() as c:
        ids = c.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.clients))
        return {i for i in ids if i != c.id and i != "fire-and-forget"}


def test_client_with_no_arguments_computes_over_tls_and_the_dashboard_is_proxied(
    tmp_path: Path, cluster: TlsCluster
):
    with cluster.lab(tmp_path) as lab:
        kernel = lab.start_kernel()
        run = lab.execute(kernel, COMPUTE)
        assert run.error is None, run
        answer, address = run.stdout.splitlines()
        link = f"/proxy/{DASHBOARD_HOST}:{cluster.dashboard_port}/status"
        assert answer == f"42 {link}"
        assert address == cluster.address, "Client() found the stack's address, over tls://"

        status = lab.request(link)
        assert status.status == 200, status
        assert "bokeh" in status.body.lower() and "dask" in status.body.lower()
        # what dask-labextension's pane loads (its browser-side check, then each plot)
        base = link.removesuffix("/status")
        plots = lab.request(base + "/individual-plots.json")
        assert plots.status == 200, plots
        task_stream = plots.json()["Individual Task Stream"]  # type: ignore[index]
        pane = lab.request(base + task_stream)
        assert pane.status == 200 and "bokeh" in pane.body.lower(), pane
        assert_pane_settings(lab, link)

        # without the token: the login page, never the dashboard
        refused = lab.request(link, token=False)
        assert refused.status in (302, 403), refused
        assert refused.status == 403 or refused.headers["Location"].startswith("/login"), refused
        # the allow-list: no other host (here: the worker's dashboard, on another loopback address)
        other = lab.request(f"/proxy/127.0.0.1:{cluster.worker_dashboard_ports[0]}/status")
        assert other.status == 403 and "is not allowed" in other.body, other


def assert_pane_settings(lab: Lab, link: str) -> None:
    """JupyterLab serves dask-labextension's settings with the stack's dashboard URL as the default."""
    settings = lab.request(f"/lab/api/settings/{jupyter_lab.DASK_PANE_PLUGIN}")
    assert settings.status == 200, settings
    schema = settings.json()["schema"]["properties"]  # type: ignore[index]
    assert schema["defaultURL"]["default"] == link
    assert schema["browserDashboardCheck"]["default"] is True


STRANGER = """
import pathlib, tempfile
from distributed import Client, Security
folder = pathlib.Path(tempfile.mkdtemp())
for name, text in {files!r}.items():
    (folder / name).write_text(text)
security = Security(
    tls_ca_file=str(folder / "ca.crt"),
    tls_client_cert=str(folder / "tls.crt"),
    tls_client_key=str(folder / "tls.key"),
    require_encryption=True,
)
try:
    Client({address!r}, security=security, timeout=5)
except Exception as e:
    print(f"refused {{type(e).__name__}}")
else:
    print("connected")
"""


def test_the_scheduler_refuses_plain_tcp_and_another_cas_certificate_from_the_notebook(
    tmp_path: Path, cluster: TlsCluster
):
    with cluster.lab(tmp_path) as lab:
        kernel = lab.start_kernel()
        # trusting the cluster's CA (the server is accepted) but holding another CA's certificate
        s = cluster.stranger
        ca = cluster.user.ca_file.read_text()
        files = {"ca.crt": ca, "tls.crt": s.cert.read_text(), "tls.key": s.key.read_text()}
        run = lab.execute(kernel, STRANGER.format(files=files, address=cluster.address))
        assert run.error is None and run.stdout.startswith("refused "), run
        # plain TCP to the TLS port: the scheduler closes it
        host, port = cluster.address.removeprefix("tls://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(b"\x00" * 64)
            try:
                answered = raw.recv(64)
            except ConnectionResetError:
                answered = b""
            assert answered == b"", "the scheduler answered plaintext"
    log = wait_for(
        lambda: (t := cluster.log.read_text(errors="replace")) and "WRONG_VERSION_NUMBER" in t and t,
        30,
        "the scheduler's log of the plain-TCP refusal",
    )
    assert "certificate verify failed" in str(log), "another CA's certificate: refused by the scheduler"


def test_an_idle_kernel_is_culled_its_client_leaves_and_the_idle_server_exits(
    tmp_path: Path, cluster: TlsCluster
):
    before = scheduler_clients(cluster)
    # 6 s; the stack's key is whole minutes. Jupyter's idle-server check runs every 2 s instead of every
    # minute (testbed.dask.jupyter.idle_check_override); the idleness decision and the exit are jupyter's.
    with cluster.lab(tmp_path, cull_idle_minutes=0.1, idle_check_s=2) as lab:
        kernel = lab.start_kernel()
        run = lab.execute(kernel, "from distributed import Client\nc = Client()\nprint(c.id)")
        assert run.error is None, run
        held = run.stdout.strip()
        assert held in scheduler_clients(cluster) - before, "the kernel's Client is connected"

        wait_for(lambda: not lab.kernels(), 60, "the idle kernel to be culled", every=1)
        wait_for(lambda: held not in scheduler_clients(cluster), 60, "the culled kernel's Client to leave")
        assert "Culling" in lab.log_text()
        # no request from now on: the server, with no kernel and no activity, exits by itself; the pod's
        # restartPolicy starts a fresh one
        assert lab.process is not None
        wait_for(lambda: lab.process.poll() is not None, 150, "the idle server to exit", every=1)
        assert lab.process.returncode == 0, lab.log_text()[-2000:]
        assert "shutting down" in lab.log_text()
        assert (
            "test: idle-server check every 2000 ms" in lab.log_text()
        )  # the shortened check was the one in force
