"""A real Kubernetes 1.20.2 control plane on 127.0.0.1, started once per pytest session.

Why a real one: the objects our Pulumi program creates and the preload's API calls must meet real
validation, real RBAC and the real Deployment/ReplicaSet/scheduler logic; anything we imitated would
share our misunderstandings. Binaries come from tests/kube/build.sh (Debian bookworm source package).

Every port is picked free at start (other engineers run suites concurrently on the same machine); all
state lives in one temporary folder; processes are stopped by PID in dependency order.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from testbed.kube.rest import ApiError, Rest

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
DEFAULT_BIN = Path.home() / ".cache" / "adaptive-dask" / "kube-1.20.2" / "bin"
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "kube" / "build.sh"
T = TypeVar("T")

_port_lock = threading.Lock()
_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A currently free loopback port, never handed out twice by this process.

    The kernel may reuse a port we probed and released, so we remember what we handed out; the small
    window between probing and the child binding it is accepted (start is retried on bind failure).
    """
    with _port_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise RuntimeError("no free port found")


# Exec shim: the child asks the kernel for SIGKILL when its parent (thread) dies, then becomes the real
# program (same PID). Why: if the test process is killed hard, an orphaned apiserver (~300 MB) or pod
# process would otherwise live on and disturb the next run; preexec_fn is unsafe with threads.
_DEATHSIG_SHIM = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)\n"  # PR_SET_PDEATHSIG
    "os.getppid() == 1 and sys.exit(137)\n"  # the parent died before prctl took effect
    "try:\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "except OSError as exc:\n"
    "    print(f'exec {sys.argv[1]!r} failed: {exc}', file=sys.stderr)\n"
    "    sys.exit(127)\n"
)


def die_with_parent(argv: list[str]) -> list[str]:
    """argv wrapped so the process is SIGKILLed when the thread that started it exits (Linux)."""
    if not sys.platform.startswith("linux"):
        return argv
    return [sys.executable, "-c", _DEATHSIG_SHIM, *argv]


def find_binaries() -> tuple[Path | None, str]:
    """Locate a folder with all four binaries: KUBEBUILDER_ASSETS, ADAPTIVE_DASK_KUBE_BIN, the build cache.

    Returns (folder, "") or (None, reason-with-remedy).
    """
    candidates: list[tuple[str, Path]] = []
    for var in ("KUBEBUILDER_ASSETS", "ADAPTIVE_DASK_KUBE_BIN"):
        if os.environ.get(var):
            candidates.append((var, Path(os.environ[var])))
    candidates.append(("build cache", DEFAULT_BIN))
    tried = []
    for label, folder in candidates:
        missing = [b for b in BINARIES if not os.access(folder / b, os.X_OK)]
        if not missing:
            return folder, ""
        tried.append(f"{label} {folder} lacks {', '.join(missing)}")
    return None, (
        "Kubernetes control-plane binaries not found ("
        + "; ".join(tried)
        + "). Run `bash tests/kube/build.sh`"
        " (Debian bookworm, about 6 min) or set KUBEBUILDER_ASSETS to a folder holding "
        + ", ".join(BINARIES)
        + " for Kubernetes 1.20.x."
    )


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 60.0,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Poll `predicate` until it returns something truthy, and return that value.

    Exceptions raised by the predicate count as "not yet" (an object may not exist yet) and the last
    one is reported on timeout, with `message` (a string or a callable for a late-computed description).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    last: Any = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            detail = f"; last error: {last_exc!r}" if last_exc else f"; last value: {last!r}"
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {text}{detail}")
        time.sleep(interval)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def sign_serving_cert(ca_file: Path, ca_key_file: Path, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Issue a serving certificate for 127.0.0.1/localhost signed by the test CA; returns (cert, key)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    key, csr, crt, ext = (out_dir / f"{name}{s}" for s in (".key", ".csr", ".crt", ".ext"))
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={name}", cwd=out_dir)  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_file), "-CAkey", str(ca_key_file),
             "-CAcreateserial", "-out", str(crt), "-days", "7", "-extfile", str(ext),
             cwd=out_dir)  # fmt: skip
    return crt, key


@dataclass
class Component:
    """One control-plane process: its command line, log file and PID."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        fh = self.log.open("ab")
        try:
            self.proc = subprocess.Popen(
                die_with_parent(self.argv),
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            fh.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by PID, wait, then SIGKILL: each component gets its own chance to shut down cleanly."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log, lines)


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 200 * lines))
            text = fh.read().decode(errors="replace")
    except OSError as exc:
        return f"<{path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler on loopback.

    Public attributes: `url`, `port`, `ca_file`, `ca_key_file`, `admin_token`, `logs_dir`, `workdir`,
    `started_in` (seconds). Methods: `api_client()`, `rest()`, `service_account_token()`,
    `create_namespace()`, `delete_namespace()`, `namespace()` (context manager), `kubeconfig()`.
    """

    bin_dir: Path
    workdir: Path
    admin_token: str = field(default_factory=lambda: "admin-" + secrets.token_hex(16))
    components: list[Component] = field(default_factory=list)
    port: int = 0
    started_in: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds since start, per readiness step

    # ---- paths -------------------------------------------------------------------------------------
    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def ca_file(self) -> str:
        return str(self.pki / "ca.crt")

    @property
    def ca_key_file(self) -> str:
        return str(self.pki / "ca.key")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self, attempts: int = 3) -> None:
        """Start all components; a port grabbed by someone else between probe and bind means one retry."""
        t0 = time.monotonic()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._make_pki()
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                break
            except Exception:
                self.stop()
                if attempt == attempts:
                    raise
        self.started_in = time.monotonic() - t0

    def _make_pki(self) -> None:
        self.pki.mkdir(parents=True, exist_ok=True)
        p = self.pki
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=p)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=p)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                 "-days", "7", "-subj", "/CN=adaptive-dask-test-ca", cwd=p)  # fmt: skip
        sign_serving_cert(p / "ca.crt", p / "ca.key", p, "apiserver")
        self._component_tokens = {
            "kcm": "kcm-" + secrets.token_hex(16),
            "scheduler": "sched-" + secrets.token_hex(16),
        }
        # Static tokens: admin and the two control-plane clients, all in system:masters (the tests are
        # about workloads' RBAC, not the control plane's own).
        (p / "tokens.csv").write_text(
            f"{self.admin_token},admin,admin-uid,system:masters\n"
            f"{self._component_tokens['kcm']},system:kube-controller-manager,kcm-uid,system:masters\n"
            f"{self._component_tokens['scheduler']},system:kube-scheduler,sched-uid,system:masters\n"
        )

    def kubeconfig(self, path: Path, token: str, server: str | None = None) -> Path:
        """Write a kubeconfig for `token` (for components, or for a human poking at a kept cluster)."""
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: t, cluster: {{server: '{server or self.url}',"
            f" certificate-authority: '{self.ca_file}'}}}}]\n"
            f"users: [{{name: u, user: {{token: '{token}'}}}}]\n"
            "contexts: [{name: t, context: {cluster: t, user: u}}]\ncurrent-context: t\n"
        )
        return path

    def _start_once(self) -> None:
        b, p, w = self.bin_dir, self.pki, self.workdir
        etcd_client, etcd_peer = free_port(), free_port()
        self.port = free_port()
        kcm_port, sched_port = free_port(), free_port()
        etcd_dir = w / "etcd"
        shutil.rmtree(etcd_dir, ignore_errors=True)
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        etcd = Component(
            "etcd",
            [str(b / "etcd"), "--name", "t", "--data-dir", str(etcd_dir),
             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"t={peer_url}", "--unsafe-no-fsync"],
            self.logs_dir / "etcd.log",
        )  # fmt: skip
        apiserver = Component(
            "kube-apiserver",
            [str(b / "kube-apiserver"), f"--etcd-servers={etcd_url}",
             "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
             f"--secure-port={self.port}", "--insecure-port=0", f"--cert-dir={w / 'apiserver-certs'}",
             f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
             f"--client-ca-file={p / 'ca.crt'}", f"--token-auth-file={p / 'tokens.csv'}",
             "--authorization-mode=RBAC",
             "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
             f"--service-account-key-file={p / 'sa.pub'}",
             f"--service-account-signing-key-file={p / 'sa.key'}",
             "--api-audiences=https://kubernetes.default.svc.cluster.local",
             "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
             "--enable-priority-and-fairness=false", "--profiling=false"],
            self.logs_dir / "kube-apiserver.log",
        )  # fmt: skip
        kcm_cfg = self.kubeconfig(w / "kcm.kubeconfig", self._component_tokens["kcm"])
        kcm = Component(
            "kube-controller-manager",
            [str(b / "kube-controller-manager"), f"--kubeconfig={kcm_cfg}",
             "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", "--port=0",
             f"--cert-dir={w / 'kcm-certs'}", "--leader-elect=false",
             # No kubelet heartbeats leases exist: without this, node lifecycle evicts every pod after 300 s.
             "--controllers=*,-nodelifecycle",
             f"--service-account-private-key-file={p / 'sa.key'}", f"--root-ca-file={p / 'ca.crt'}",
             "--use-service-account-credentials=false", "--profiling=false"],
            self.logs_dir / "kube-controller-manager.log",
        )  # fmt: skip
        sched_cfg = self.kubeconfig(w / "scheduler.kubeconfig", self._component_tokens["scheduler"])
        scheduler = Component(
            "kube-scheduler",
            [str(b / "kube-scheduler"), f"--kubeconfig={sched_cfg}",
             "--bind-address=127.0.0.1", f"--secure-port={sched_port}", "--port=0",
             f"--cert-dir={w / 'scheduler-certs'}", "--leader-elect=false", "--profiling=false"],
            self.logs_dir / "kube-scheduler.log",
        )  # fmt: skip
        # Stop order is the reverse of this list: scheduler, KCM, apiserver, etcd.
        self.components = [etcd, apiserver, kcm, scheduler]

        t0 = time.monotonic()
        etcd.start()
        self._wait_http(etcd, f"{etcd_url}/health", verify=False, timeout=30)
        self.timings["etcd"] = time.monotonic() - t0
        apiserver.start()
        # KCM and the scheduler wait for the apiserver themselves: starting them now overlaps their
        # own start-up (~3 s on 2 busy cores) with the apiserver's.
        kcm.start()
        scheduler.start()
        self._wait_http(apiserver, f"{self.url}/readyz", verify=True, timeout=90, token=self.admin_token)
        self.timings["apiserver"] = time.monotonic() - t0
        self._wait_http(kcm, f"https://127.0.0.1:{kcm_port}/healthz", verify=False, timeout=60)
        self._wait_http(scheduler, f"https://127.0.0.1:{sched_port}/healthz", verify=False, timeout=60)
        self.timings["kcm+scheduler healthy"] = time.monotonic() - t0
        # The default namespace's ServiceAccount with its token Secret proves the KCM controllers work.
        self.wait_service_account("default", "default", timeout=60)
        self.timings["default SA token"] = time.monotonic() - t0

    def _wait_http(
        self, comp: Component, url: str, *, verify: bool, timeout: float, token: str | None = None
    ) -> None:
        import urllib3

        pool = urllib3.PoolManager(
            ca_certs=self.ca_file if verify else None,
            cert_reqs="CERT_REQUIRED" if verify else "CERT_NONE",
            retries=False,
            timeout=urllib3.Timeout(2.0, 5.0),
        )
        headers = {"Authorization": f"Bearer {token}"} if token else {}

        def ok() -> bool:
            if not comp.alive():
                raise RuntimeError(
                    f"{comp.name} exited ({comp.proc and comp.proc.returncode}):\n{comp.tail(20)}"
                )
            try:
                with warnings_off():
                    return pool.request("GET", url, headers=headers).status == 200
            except urllib3.exceptions.HTTPError:
                return False

        deadline = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{comp.name} not healthy at {url} after {timeout}s:\n{comp.tail(20)}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop by PID in reverse start order, so the apiserver never waits on a dead etcd."""
        for comp in reversed(self.components):
            comp.stop()

    def log_tails(self, lines: int = 30) -> dict[str, str]:
        return {c.name: c.tail(lines) for c in self.components}

    # ---- clients -----------------------------------------------------------------------------------
    def api_client(self, token: str | None = None, url: str | None = None) -> Any:
        """An official `kubernetes.client.ApiClient` (admin unless another bearer `token` is given).

        Note for kubernetes 37.x: PATCH calls default to json-patch; pass
        `_content_type="application/merge-patch+json"` when sending a dict.
        """
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = url or self.url
        cfg.ssl_ca_cert = self.ca_file
        cfg.api_key = {"authorization": f"Bearer {token or self.admin_token}"}
        return client.ApiClient(cfg)

    def rest(self, token: str | None = None, url: str | None = None) -> Rest:
        """The harness's small thread-safe JSON client (admin unless `token`)."""
        return Rest(url or self.url, token or self.admin_token, self.ca_file)

    def service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        legacy: bool = False,
        expiration_seconds: int = 3600,
        bound_pod: dict[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> str:
        """A real token for ServiceAccount `namespace/name`.

        Default: a TokenRequest (a signed, expiring JWT, optionally bound to a pod so it dies with it),
        as kubelets on EKS mount. `legacy=True` returns the token the controller-manager's tokens
        controller put in the SA's Secret (the 1.20 default mount), waiting for it to appear.
        """
        rest = self.rest()
        base = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
        if legacy:

            def secret_token() -> str | None:
                sa = rest.get(base)
                for ref in sa.get("secrets") or []:
                    sec = rest.get_or_none(f"/api/v1/namespaces/{namespace}/secrets/{ref['name']}")
                    if (
                        sec
                        and sec.get("type") == "kubernetes.io/service-account-token"
                        and sec.get("data", {}).get("token")
                    ):
                        import base64

                        return base64.b64decode(sec["data"]["token"]).decode()
                return None

            return wait_for(secret_token, timeout, message=f"legacy token Secret of SA {namespace}/{name}")
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
        if bound_pod is not None:
            spec["boundObjectRef"] = {
                "kind": "Pod",
                "apiVersion": "v1",
                "name": bound_pod["metadata"]["name"],
                "uid": bound_pod["metadata"]["uid"],
            }
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        out = wait_for(
            lambda: rest.post(f"{base}/token", body),
            timeout,
            message=f"TokenRequest for SA {namespace}/{name}",
        )
        return str(out["status"]["token"])

    # ---- namespaces --------------------------------------------------------------------------------
    def create_namespace(self, prefix: str = "t", labels: dict[str, str] | None = None) -> str:
        """Create a fresh namespace and wait for its `default` ServiceAccount (pods are refused before)."""
        clean = "".join(c if c.isalnum() else "-" for c in prefix.lower()).strip("-")[:40].strip("-") or "t"
        name = f"{clean}-{uuid.uuid4().hex[:6]}"
        rest = self.rest()
        rest.post(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}},
        )
        self.wait_service_account(name, "default")
        return name

    def wait_service_account(self, namespace: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the SA exists and the tokens controller has linked its token Secret.

        Why: on 1.20 the ServiceAccount admission plugin refuses a pod (HTTP 500 "No API token found
        for service account") until that Secret exists; controllers retry, a test posting a bare pod
        would not.
        """
        rest = self.rest()
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"
        return wait_for(
            lambda: (lambda sa: sa if sa and sa.get("secrets") else None)(rest.get_or_none(path)),
            timeout,
            message=f"ServiceAccount {namespace}/{name} with its token Secret",
        )

    def create_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        """Create a ServiceAccount and wait for its token Secret (see `wait_service_account`)."""
        self.rest().post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        )
        return self.wait_service_account(namespace, name)

    def delete_namespace(self, name: str) -> None:
        """Delete workloads first (so no controller makes new pods), pods with grace 0, then the namespace."""
        rest = self.rest()
        opts = {"propagationPolicy": "Background"}
        for path in (
            f"/apis/apps/v1/namespaces/{name}/deployments",
            f"/apis/apps/v1/namespaces/{name}/replicasets",
            f"/apis/apps/v1/namespaces/{name}/statefulsets",
        ):
            with contextlib.suppress(ApiError):
                rest.delete(path, opts)
        with contextlib.suppress(ApiError):
            rest.delete(f"/api/v1/namespaces/{name}/pods", {"gracePeriodSeconds": 0}, gracePeriodSeconds=0)
        with contextlib.suppress(ApiError):
            rest.delete(f"/api/v1/namespaces/{name}")

    @contextlib.contextmanager
    def namespace(self, prefix: str = "t") -> Iterator[str]:
        name = self.create_namespace(prefix)
        try:
            yield name
        finally:
            self.delete_namespace(name)


@contextlib.contextmanager
def warnings_off() -> Iterator[None]:
    import warnings

    import urllib3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        yield
