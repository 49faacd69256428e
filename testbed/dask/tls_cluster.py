"""A mutual-TLS Dask cluster of real processes shaped like the stack's, for the notebook's tests and its
screenshot: a `--protocol tls` scheduler whose certificate names only its Service, worker processes with
the cluster certificate, and the users' client-auth-only certificate (what the notebook pod mounts).

Addresses mirror the pods': clients use `tls://localhost:<port>` (a name the certificate does not hold,
as a Service name through a forwarder); the scheduler's dashboard listens on its own loopback address
(DASHBOARD_HOST, standing for the scheduler's host), apart from the workers' dashboards on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from distributed import Client, Security

from testbed import pki
from testbed.dask.jupyter import Lab, start_lab
from testbed.dask.procs import env, scheduler, stop, wait_for

SERVICE = "dask-scheduler.notebook-test.svc.cluster.local"
DASHBOARD_HOST = "127.0.0.2"


@dataclass(frozen=True)
class TlsCluster:
    address: str  # tls://localhost:<port>
    dashboard_port: int
    worker_dashboard_ports: tuple[int, ...]
    user: pki.TlsFiles  # the client certificate the notebook mounts
    stranger: pki.TlsFiles  # another CA's
    log: Path  # the scheduler's

    def lab(
        self, folder: Path, cull_idle_minutes: float = 30, idle_check_s: float | None = None
    ) -> contextlib.AbstractContextManager[Lab]:
        """The notebook's lab, holding the user's certificate, pointed at this scheduler."""
        return start_lab(
            folder,
            scheduler_address=self.address,
            client_tls=self.user,
            scheduler_host=DASHBOARD_HOST,
            dashboard_port=self.dashboard_port,
            cull_idle_minutes=cull_idle_minutes,
            idle_check_s=idle_check_s,
        )

    def client(self) -> Client:
        security = Security(
            tls_ca_file=str(self.user.ca_file),
            tls_client_cert=str(self.user.cert),
            tls_client_key=str(self.user.key),
            require_encryption=True,
        )
        return Client(self.address, security=security, timeout=30)


@contextlib.contextmanager
def tls_cluster(folder: Path, workers: int = 1, nthreads: int = 2) -> Iterator[TlsCluster]:
    ca, other = pki.make_ca("cluster-ca"), pki.make_ca("another-ca")
    files = pki.write_tls_files(folder / "cluster", ca, pki.make_service_leaf(ca, "dask", (SERVICE,)))
    _, user_key = pki.private_key_pem()
    user_leaf = pki.Pem(pki.sign_leaf(ca, pki.public_key_of(user_key), "user", server=False), user_key)
    user = pki.write_tls_files(folder / "user", ca, user_leaf)
    stranger = pki.write_tls_files(folder / "stranger", other, pki.make_leaf(other, "stranger"))
    options = ("--protocol", "tls", "--dashboard-address", f"{DASHBOARD_HOST}:0")  # the last flag wins
    with (
        scheduler(folder, *options, extra_env=files.env(), preload=False) as s,
        contextlib.ExitStack() as procs,
    ):
        dashboard = json.loads((folder / "scheduler.json").read_text())["services"]["dashboard"]
        for i in range(workers):
            command = [sys.executable, "-m", "distributed.cli.dask_worker", s.address]
            command += ["--nthreads", str(nthreads), "--dashboard-address", "127.0.0.1:0"]
            command += ["--no-nanny", "--name", f"w{i}"]
            with open(folder / f"worker-{i}.log", "wb") as out:
                worker = subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, env=env(**files.env())
                )
            procs.callback(stop, worker)
        port = s.address.rsplit(":", 1)[1]
        cluster = TlsCluster(f"tls://localhost:{port}", dashboard, (), user, stranger, s.log)
        with cluster.client() as c:
            wait_for(lambda: len(c.scheduler_info()["workers"]) == workers, 60, "the workers")
            infos = c.scheduler_info()["workers"].values()
            ports = tuple(info["services"]["dashboard"] for info in infos)
        yield TlsCluster(cluster.address, dashboard, ports, user, stranger, s.log)
