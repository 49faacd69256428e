"""Fixtures of the Kubernetes tests: a scripted fake apiserver, and the Dask layer's objects.

- `FakeApiServer` (the REST client's unit tests): recorded request/response pairs. Each test lists the
  answers the "apiserver" gives, in order, and afterwards inspects the requests it got. Besides plain
  answers it can stall (timeouts) or drop the connection, the failures a real network has.
- `dask_layer(namespace, **config)` (the end-to-end tests on the real control plane and the
  scale_down_safety benchmark): the objects the Pulumi program registers, from its own builders, with
  the few overrides the harness needs listed where they are made (below).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from testbed.kube.stack_apply import StackObjects, object_path, record_stack


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


# -- the Dask layer as the Pulumi program registers it, for the end-to-end tests on the real control plane --
#
# Every object is one the program registers: the `dev` stack is run under the infra mocks
# (testbed/kube/stack_apply.record_stack: what `pulumi up` would send) with stack config overrides only -
# `adaptive-dask:dask` (the test's namespace, the scaling knobs a test asks for, workers of 1 CPU / 2Gi,
# one thread, as stacks/Pulumi.local.yaml sizes them) and one worker group named `workers` (the
# harness's worker nodes carry that pool label and the worker taint). So selector, labels, command lines,
# probes, ports, volumes, ServiceAccounts, Role, grace period and resources are production's, and the
# pods load dask_adaptive from the shipped ConfigMap. The harness (testbed/kube) ignores the image: the
# venv's python runs the command.
#
# Overrides of the registered objects, and only these (each where a test asks for it, never silently):
# - the scheduler runs as a bare Pod made from the scheduler Deployment's pod template, named
#   `dask-scheduler`, restartPolicy Never: a failed start stays visible as a Failed pod with its exit
#   code, and a restart cannot hide a crash (the tests assert Running with 0 restarts);
# - PYTHONPATH gets the repository appended (after the ConfigMap folder, which still provides
#   dask_adaptive), so scheduler and workers can import the tasks the tests define in this module;
# - `nanny=False`: `--no-nanny` instead of `--preload-nanny dask_adaptive.worker`: one process per worker
#   halves its start-up on 2 shared cores; retirement goes through the same worker preload;
# - `command` / `readiness` / `env` of the worker container: the backend tests' sleeper pods and the
#   benchmark's "2017" contender (plain `dask worker`), which are not the shipped worker;
# - `with_scale=False` drops the deployments/scale rule from the Role, as a broken install would.

REPO = Path(__file__).resolve().parents[2]
STACK = "dev"
WORKER_GROUP = {"name": "workers", "instanceTypes": ["m6i.large"], "minSize": 0, "maxSize": 5}
SIZING = {"workerCpu": "1", "workerMemory": "2Gi"}
WORKERS = "dask-worker"  # the worker Deployment (and its ServiceAccount), as the program names it
SCHEDULER = "dask-scheduler"  # the scheduler's Service and ServiceAccount, and the tests' scheduler Pod
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding")
Posting = tuple[str, dict[str, Any]]  # (collection path, object)


@dataclass(frozen=True)
class DaskLayer:
    """The Dask layer's objects the program registers for one namespace, as `(path, object)` to post
    (fresh copies each time: a test may change what it gets)."""

    stack: StackObjects

    @property
    def namespace(self) -> str:
        return self.stack.namespace

    @property
    def selector(self) -> str:
        """The worker Deployment's label selector (the preload's `--selector`)."""
        labels = self.stack.find("Deployment", WORKERS)["spec"]["selector"]["matchLabels"]
        return ",".join(f"{k}={v}" for k, v in labels.items())

    def worker_requests(self) -> dict[str, str]:
        """What one worker pod requests (`cpu`, `memory`): to size harness nodes in worker pods."""
        (container,) = self.stack.find("Deployment", WORKERS)["spec"]["template"]["spec"]["containers"]
        return dict(container["resources"]["requests"])

    @staticmethod
    def _posting(obj: dict[str, Any]) -> Posting:
        return object_path(obj), copy.deepcopy(obj)

    def rbac(self, *, with_scale: bool = True) -> list[Posting]:
        """The ServiceAccounts, the scheduler's Role (exactly the program's rules, anchors §6.3) and its
        RoleBinding; `with_scale=False` drops the deployments/scale rule."""
        out = [self._posting(o) for o in self.stack.objects if o["kind"] in RBAC_KINDS]
        if not with_scale:
            for _, obj in out:
                if obj["kind"] == "Role":
                    obj["rules"] = [r for r in obj["rules"] if "deployments/scale" not in r["resources"]]
        return out

    def supporting(self) -> list[Posting]:
        """Everything else the layer registers but the Namespace (the test's exists) and the two
        Deployments: the preload ConfigMap, the scheduler Service, and whatever the program adds."""
        skip = ("Namespace", "Deployment", *RBAC_KINDS)
        return [self._posting(o) for o in self.stack.objects if o["kind"] not in skip]

    def worker_deployment(
        self,
        *,
        command: list[str] | None = None,
        readiness: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        nanny: bool = True,
    ) -> Posting:
        """The program's worker Deployment (replicas 0), with the overrides asked for (see above)."""
        path, dep = self._posting(self.stack.find("Deployment", WORKERS))
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        if not nanny:
            cmd = container["command"]
            i = cmd.index("--preload-nanny")
            container["command"] = [*cmd[:i], "--no-nanny", *cmd[i + 2 :]]
        if command is not None:
            container["command"] = list(command)
        if readiness is not None:
            container["readinessProbe"] = readiness
        container["env"] = _harness_env(container, env)
        return path, dep

    def scheduler_pod(self, *, env: dict[str, str] | None = None) -> Posting:
        """A bare Pod from the program's scheduler Deployment template (see the overrides above)."""
        template = copy.deepcopy(self.stack.find("Deployment", SCHEDULER)["spec"]["template"])
        spec = {**template["spec"], "restartPolicy": "Never"}
        (container,) = spec["containers"]
        container["env"] = _harness_env(container, env)
        metadata = {**template["metadata"], "name": SCHEDULER, "namespace": self.namespace}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}
        return object_path(pod), pod


def _under(path: str, mounts: list[str]) -> bool:
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def repo_path_outside(mounts: list[str]) -> str:
    """The repository as a path no mountPath covers. The harness rewrites every mountPath in env values
    to a per-pod folder, so a checkout under `/tmp` (a common place for a CI clone, and the scheduler's
    emptyDir mount) would be rewritten away: then a stable symlink under the user's cache stands in."""
    if not _under(str(REPO), mounts):
        return str(REPO)
    link = (
        Path.home()
        / ".cache"
        / "adaptive-dask"
        / f"repo-{hashlib.sha256(str(REPO).encode()).hexdigest()[:12]}"
    )
    assert not _under(str(link), mounts), f"neither {REPO} nor {link} lies outside the mounts {mounts}"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink() or link.resolve() != REPO:
        link.unlink(missing_ok=True)
        with contextlib.suppress(FileExistsError):  # another suite made the same link meanwhile
            link.symlink_to(REPO, target_is_directory=True)
    return str(link)


def _harness_env(container: dict[str, Any], extra: dict[str, str] | None) -> list[dict[str, Any]]:
    """The container's env with the repository appended to PYTHONPATH, then `extra` (a test's settings)."""
    repo = repo_path_outside([m["mountPath"] for m in container.get("volumeMounts") or []])
    env = [
        {**e, "value": f"{e['value']}:{repo}"} if e["name"] == "PYTHONPATH" else dict(e)
        for e in container["env"]
    ]
    return env + [{"name": k, "value": v} for k, v in (extra or {}).items()]


def dask_layer(namespace: str, **dask: Any) -> DaskLayer:
    """The program's Dask layer in `namespace`; `dask` are `adaptive-dask:dask` keys (e.g. `minWorkers=0,
    maxWorkers=4, interval=0.5, scaleDownDelay=3`) over the worker sizing above."""
    overrides = {
        "adaptive-dask:dask": json.dumps({"namespace": namespace, **SIZING, **dask}),
        "adaptive-dask:workerGroups": json.dumps([WORKER_GROUP]),
    }
    layer = DaskLayer(record_stack(STACK, overrides))
    assert layer.namespace == namespace, (layer.namespace, namespace)
    return layer


def held_execution(i: int, folder: str, event: str, delay: float = 0.0) -> int:
    """Blocks until the test sets the distributed Event `event`: keeps the scheduler's target up until
    the new workers have arrived; then works `delay` seconds and leaves one file per execution (a
    recomputation would show)."""
    import time
    import uuid

    from distributed import Event

    Event(event).wait(timeout=120)
    time.sleep(delay)
    (Path(folder) / f"{i}.{uuid.uuid4().hex}").touch()
    return i * i
