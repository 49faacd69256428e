"""A real JupyterLab server driven as a browser would, without a browser: its REST API and its kernels'
websocket channels (Jupyter's JSON message protocol), with or without the token.

Shared by the real-process notebook tests (tests/notebook/) and the control-plane test
(tests/kube/test_notebook.py), where the lab is the notebook pod's own process: `LabClient` only needs
its URL and token. `start_lab` starts one from `infra/k8s/jupyter_lab.py`'s command line, config files
and environment, exactly what the pod runs, in a temporary home.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tornado.websocket import websocket_connect

from dask_adaptive.client_config import KEYS as CLIENT_TLS_FILES
from infra.k8s import jupyter_lab
from testbed import pki
from testbed.dask.procs import env as process_env
from testbed.dask.procs import stop, wait_for


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Execution:
    """What one cell printed, and its error (`ename: evalue`) if it raised."""

    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    messages: list[dict] = field(default_factory=list)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect (e.g. to /login) is an answer to assert on, not to follow


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class LabClient:
    url: str  # http://host:port, no trailing slash
    token: str

    def request(self, path: str, *, method: str = "GET", body: object = None, token: bool = True) -> Response:
        """One HTTP request; `token=False` sends none (as a stranger would). Redirects are returned."""
        headers = {"Authorization": f"token {self.token}"} if token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with _OPENER.open(request, timeout=30) as r:
                return Response(r.status, dict(r.headers), r.read().decode(errors="replace"))
        except urllib.error.HTTPError as e:
            return Response(e.code, dict(e.headers), e.read().decode(errors="replace"))

    def ready(self) -> bool:
        with contextlib.suppress(OSError):
            return self.request(jupyter_lab.HEALTH_PATH, token=False).status == 200
        return False

    def kernels(self) -> list[dict]:
        response = self.request("/api/kernels")
        assert response.status == 200, response
        return response.json()  # type: ignore[return-value]

    def start_kernel(self) -> str:
        response = self.request("/api/kernels", method="POST", body={"name": "python3"})
        assert response.status == 201, response
        return response.json()["id"]  # type: ignore[index]

    def execute(self, kernel_id: str, code: str, timeout: float = 120) -> Execution:
        """Run `code` in the kernel through its websocket channels; wait for the kernel to be idle again."""
        return asyncio.run(asyncio.wait_for(self._execute(kernel_id, code), timeout))

    async def _execute(self, kernel_id: str, code: str) -> Execution:
        ws_url = self.url.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
        request_headers = {"Authorization": f"token {self.token}"}
        from tornado.httpclient import HTTPRequest

        connection = await websocket_connect(HTTPRequest(ws_url, headers=request_headers))
        try:
            msg_id = uuid.uuid4().hex
            await connection.write_message(json.dumps(_execute_request(msg_id, code)))
            result = Execution()
            while True:
                raw = await connection.read_message()
                if raw is None:
                    raise AssertionError(f"kernel {kernel_id} closed its channels: {result}")
                message = json.loads(raw)
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                result.messages.append(message)
                kind, content = message["msg_type"], message["content"]
                if kind == "stream":
                    name = content["name"]
                    setattr(result, name, getattr(result, name) + content["text"])
                elif kind == "error":
                    result.error = f"{content['ename']}: {content['evalue']}"
                elif kind == "status" and content["execution_state"] == "idle":
                    return result
        finally:
            connection.close()


def _execute_request(msg_id: str, code: str) -> dict:
    header = {
        "msg_id": msg_id,
        "msg_type": "execute_request",
        "username": "test",
        "session": uuid.uuid4().hex,
        "version": "5.3",
        "date": "",
    }
    content = {
        "code": code,
        "silent": False,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}


@dataclass(frozen=True)
class Lab(LabClient):
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    config_dir: Path | None = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""


def lab_environment(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """This venv's `jupyter` and `python` first on PATH (the kernel spec runs `python`), a private HOME
    (runtime files, user settings), no DASK_* from the caller, then the pod's variables."""
    out = process_env(HOME=str(home))
    out["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), out.get("PATH", "")))
    for name in [k for k in out if k.startswith(("JUPYTER", "XDG_"))]:
        del out[name]
    out["JUPYTER_RUNTIME_DIR"] = str(runtime_dir(home))  # where the test finds the port it picked
    out.update(extra)
    return out


def root_override(folder: Path) -> dict[str, str]:
    """What lets jupyter start when the TEST runs as root (this sandbox): a config folder on
    JUPYTER_CONFIG_PATH allowing root. The pod runs as a non-root user and gets none of it; the stack's
    own config leaves `allow_root` at jupyter's default (refuse). Nothing when not root."""
    if os.geteuid() != 0:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    # jupyter_config.json: with `--config` given, jupyter reads only that base name from the config path
    (folder / "jupyter_config.json").write_text(json.dumps({"ServerApp": {"allow_root": True}}))
    return {"JUPYTER_CONFIG_PATH": str(folder)}


# jupyter_server looks for an idle server on a fixed 60 s PeriodicCallback
# (ServerApp.init_shutdown_no_activity); a test that waits for the idle exit shortens that period only.
# Whether the server is idle, and the exit, stay jupyter's own code.
_IDLE_CHECK_EVERY = """from jupyter_server import serverapp
from tornado import ioloop


def _init_shutdown_no_activity(self):
    if self.shutdown_no_activity_timeout > 0:
        self.log.info("test: idle-server check every {ms} ms")
        ioloop.PeriodicCallback(self.shutdown_no_activity, {ms}).start()


serverapp.ServerApp.init_shutdown_no_activity = _init_shutdown_no_activity
"""


def idle_check_override(folder: Path, every_s: float) -> str:
    """A config folder (for JUPYTER_CONFIG_PATH) whose `jupyter_config.py` makes the idle-server check
    run every `every_s` seconds instead of every minute."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jupyter_config.py").write_text(_IDLE_CHECK_EVERY.format(ms=int(every_s * 1000)))
    return str(folder)


@contextlib.contextmanager
def start_lab(
    folder: Path,
    *,
    scheduler_address: str,
    client_tls: pki.TlsFiles | None,
    scheduler_host: str,
    dashboard_port: int,
    cull_idle_minutes: float = 30,
    port: int = 0,
    idle_check_s: float | None = None,
) -> Iterator[Lab]:
    """`jupyter lab` from the stack's own command, config files and env, with `folder` laid out as the
    pod's volumes (config folder, token file, client certificate, home).

    `port=0` lets the server pick a free one (tests run concurrently); the real port is read back from
    the server's runtime file. `idle_check_s` shortens jupyter's fixed one-minute idle-server check
    (`idle_check_override`)."""
    home, config_dir, tls_dir = folder / "home", folder / "jupyter-config", folder / "dask-tls"
    token_file = folder / "jupyter-token" / jupyter_lab.TOKEN_FILE_NAME
    files = jupyter_lab.lab_files(
        cull_idle_minutes=cull_idle_minutes,
        scheduler_host=scheduler_host,
        dashboard_port=dashboard_port,
        config_dir=str(config_dir),
    )
    token = secrets.token_hex(24)
    written = {config_dir / name: text for name, text in files.items()}
    written[token_file] = token  # no newline: jupyter reads the file as is
    if client_tls:
        sources = (client_tls.ca_file, client_tls.cert, client_tls.key)
        for name, source in zip(CLIENT_TLS_FILES, sources, strict=True):
            written[tls_dir / name] = source.read_text()
    home.mkdir(parents=True)
    for path, text in written.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        path.chmod(0o400)
    link = jupyter_lab.dashboard_link(scheduler_host, dashboard_port)
    dask_env = jupyter_lab.dask_client_env(
        scheduler_address=scheduler_address, tls_dir=str(tls_dir) if client_tls else None, dashboard_link=link
    )
    command = jupyter_lab.lab_command(jupyter_lab.LAB_PORT, str(config_dir), root_dir=str(home))
    command = [f"--port={port}" if a.startswith("--port=") else a for a in command]
    pod_env = {**jupyter_lab.lab_env(str(token_file)), **dask_env}
    overrides = root_override(folder / "as-root")
    if idle_check_s is not None:
        paths = [
            idle_check_override(folder / "idle-check", idle_check_s),
            overrides.get("JUPYTER_CONFIG_PATH"),
        ]
        overrides["JUPYTER_CONFIG_PATH"] = os.pathsep.join(p for p in paths if p)
    environment = lab_environment(home, {**pod_env, **overrides})
    log = folder / "lab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=home)
    try:
        info = wait_for(lambda: _server_info(home, process), 90, "the lab's runtime file")
        if process.poll() is not None:
            raise AssertionError(f"jupyter lab exited {process.returncode}:\n{log.read_text()[-3000:]}")
        lab = Lab(f"http://127.0.0.1:{info['port']}", token, process, log, config_dir)  # type: ignore[index]
        wait_for(lab.ready, 60, "the lab to answer")
        yield lab
    finally:
        stop(process)


def runtime_dir(home: Path) -> Path:
    return home / ".local" / "share" / "jupyter" / "runtime"


def _server_info(home: Path, process: subprocess.Popen[bytes]) -> dict | bool:
    """The server's jpserver-<pid>.json, written once it listens (True if the process ended first)."""
    if process.poll() is not None:
        return True
    runtime = runtime_dir(home) / f"jpserver-{process.pid}.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(runtime.read_text())
    return False
