"""A scripted fake apiserver for the REST client's unit tests: recorded request/response pairs.

Each test lists the answers the "apiserver" gives, in order, and afterwards inspects the requests it got.
Besides plain answers it can stall (timeouts) or drop the connection, the failures a real network has.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # dict → JSON; bytes/str sent as is
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (longer than the client timeout = a timeout)
    drop: bool = False  # close the connection without answering
    method: str | None = None  # when set, the request must use this method ...
    path: str | None = None  # ... and this path (without the query)


def status_body(code: int, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message or reason,
        "code": code,
    }


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class _Handler(RequestHandler):
    SUPPORTED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

    def initialize(self, fake: FakeApiServer) -> None:
        self.fake = fake

    async def _any(self) -> None:
        req = self.request
        body = json.loads(req.body) if req.body else None
        self.fake.seen.append(
            Seen(
                req.method or "",
                req.path,
                {k: [v.decode() for v in vs] for k, vs in req.query_arguments.items()},
                dict(req.headers),
                body,
            )
        )
        if not self.fake.script:
            self.set_status(500)
            self.finish(json.dumps(status_body(500, "InternalError", "fake server: script exhausted")))
            return
        answer = self.fake.script.pop(0)
        if answer.method is not None and answer.method != req.method:
            self.fake.mismatches.append(f"expected {answer.method}, got {req.method} {req.path}")
        if answer.path is not None and answer.path != req.path:
            self.fake.mismatches.append(f"expected {answer.path}, got {req.path}")
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.drop:
            req.connection.stream.close()  # type: ignore[union-attr]
            return
        self.set_status(answer.status)
        for k, v in answer.headers.items():
            self.set_header(k, v)
        if isinstance(answer.body, dict):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(answer.body))
        else:
            self.finish(answer.body or b"")

    get = post = put = patch = delete = _any


class FakeApiServer:
    """Serves the scripted answers on a free loopback port (never a fixed one); HTTP or HTTPS."""

    def __init__(self, script: list[Answer] | None = None, ssl_ctx: Any = None) -> None:
        self.script: list[Answer] = list(script or [])
        self.seen: list[Seen] = []
        self.mismatches: list[str] = []
        self._ssl = ssl_ctx
        self._server: HTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeApiServer:
        sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
        self.port = sockets[0].getsockname()[1]
        app = Application([(r"/.*", _Handler, {"fake": self})])
        self._server = HTTPServer(app, ssl_options=self._ssl)
        self._server.add_sockets(sockets)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.stop()
        await self._server.close_all_connections()


def make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a 127.0.0.1 serving certificate signed by it (openssl, < 1 s)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=fake-ca",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=fake-api",
    )
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run(
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.crt",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    )
    return folder / "ca.crt", folder / "srv.crt", folder / "srv.key"


def write_service_account(folder: Path, token: str, namespace: str = "work", ca: Path | None = None) -> Path:
    """A service-account folder as kubelet mounts it: token, namespace, ca.crt."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text(token)
    (folder / "namespace").write_text(namespace)
    if ca is not None:
        (folder / "ca.crt").write_bytes(ca.read_bytes())
    return folder


# -- manifests for the end-to-end tests against the real control plane ------------------------------

REPO = Path(__file__).resolve().parents[2]
WORKERS = "dask-workers"  # the worker Deployment
WORKER_LABELS = {"app": "dask-worker", "component": "worker"}
SELECTOR = "app=dask-worker,component=worker"
SCHEDULER_SA = "dask-scheduler"
POOL_LABEL = "adaptive-dask/pool"
WORKER_TOLERATION = {
    "key": "adaptive-dask/dask-worker",
    "operator": "Equal",
    "value": "true",
    "effect": "NoSchedule",
}


def scheduler_role(deployment: str = WORKERS, *, with_scale: bool = True) -> dict[str, Any]:
    """The Role with exactly the rules the Pulumi program grants (infra.k8s_dask.role_rules, anchors
    §6.3); `with_scale=False` drops the deployments/scale rule, as a broken install would."""
    from infra.k8s_dask import role_rules

    rules = role_rules(deployment)
    if not with_scale:
        rules = [r for r in rules if "deployments/scale" not in r["resources"]]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "dask-adaptive"},
        "rules": rules,
    }


def scheduler_rbac(namespace: str, *, with_scale: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object) for the scheduler's ServiceAccount, Role and RoleBinding."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    return [
        (
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SCHEDULER_SA}},
        ),
        (f"{rbac}/roles", scheduler_role(with_scale=with_scale)),
        (
            f"{rbac}/rolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "dask-adaptive"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dask-adaptive"},
                "subjects": [{"kind": "ServiceAccount", "name": SCHEDULER_SA, "namespace": namespace}],
            },
        ),
    ]


def _env(extra: dict[str, str] | None = None) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "PYTHONPATH",
            "value": str(REPO),
        },  # the stock image would get dask_adaptive from a ConfigMap
    ]
    env += [{"name": k, "value": v} for k, v in (extra or {}).items()]
    return env


def worker_deployment(
    namespace: str,
    *,
    command: list[str] | None = None,
    readiness: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    grace: int = 10,
    nanny: bool = True,
) -> dict[str, Any]:
    """The worker Deployment at replicas 0: `dask worker --name $(POD_NAME)` with the worker preload."""
    scheduler = f"tcp://dask-scheduler.{namespace}.svc.cluster.local:8786"
    command = command or [
        "dask",
        "worker",
        scheduler,
        "--name",
        "$(POD_NAME)",
        "--nthreads",
        "1",
        "--dashboard-address",
        ":8788",
        "--preload",
        "dask_adaptive.worker",
        *(["--preload-nanny", "dask_adaptive.worker"] if nanny else ["--no-nanny"]),
    ]
    readiness = readiness or {
        "httpGet": {"path": "/dask-adaptive/ready", "port": 8788},
        "periodSeconds": 1,
        "failureThreshold": 1,
        "timeoutSeconds": 1,
    }
    container = {
        "name": "worker",
        "image": "ghcr.io/dask/dask:2026.8.0-py3.11",
        "command": command,
        "ports": [{"containerPort": 8788, "name": "dashboard"}],
        "env": _env(env),
        "readinessProbe": readiness,
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": WORKERS, "labels": WORKER_LABELS},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": WORKER_LABELS},
            "template": {
                "metadata": {"labels": WORKER_LABELS},
                "spec": {
                    "containers": [container],
                    "terminationGracePeriodSeconds": grace,
                    "nodeSelector": {POOL_LABEL: "workers"},
                    "tolerations": [WORKER_TOLERATION],
                },
            },
        },
    }


def scheduler_pod(namespace: str, options: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """A bare scheduler Pod (restartPolicy Never, so a failed start stays visible as an exit code)."""
    command = [
        "dask",
        "scheduler",
        "--port",
        "8786",
        "--dashboard-address",
        ":8787",
        "--preload",
        "dask_adaptive.preload",
        "--backend",
        "kubernetes",
        "--namespace",
        namespace,
        "--deployment",
        WORKERS,
        "--selector",
        SELECTOR,
        *options,
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dask-scheduler", "labels": {"app": "dask-scheduler"}},
        "spec": {
            "serviceAccountName": SCHEDULER_SA,
            "restartPolicy": "Never",
            "nodeSelector": {POOL_LABEL: "system"},
            "containers": [
                {
                    "name": "scheduler",
                    "image": "ghcr.io/dask/dask:2026.8.0-py3.11",
                    "command": command,
                    "ports": [
                        {"containerPort": 8786, "name": "comm"},
                        {"containerPort": 8787, "name": "dashboard"},
                    ],
                    "env": _env(env),
                    "readinessProbe": {"tcpSocket": {"port": 8786}, "periodSeconds": 1},
                }
            ],
        },
    }


def scheduler_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "dask-scheduler"},
        "spec": {
            "selector": {"app": "dask-scheduler"},
            "ports": [
                {"name": "comm", "port": 8786, "targetPort": 8786},
                {"name": "dashboard", "port": 8787, "targetPort": 8787},
            ],
        },
    }


def record_execution(i: int, folder: str, delay: float = 0.0) -> int:
    """A task that leaves one file per execution, so a recomputed (lost) result is visible afterwards."""
    import time
    import uuid

    time.sleep(delay)
    (Path(folder) / f"{i}.{uuid.uuid4().hex}").touch()
    return i * i


def held_execution(i: int, folder: str, event: str) -> int:
    """Blocks until the test sets the distributed Event `event`: keeps the scheduler's target up until
    the new workers have arrived, then leaves one file per execution (a recomputation would show)."""
    import uuid

    from distributed import Event

    Event(event).wait(timeout=120)
    (Path(folder) / f"{i}.{uuid.uuid4().hex}").touch()
    return i * i
