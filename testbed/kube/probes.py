"""Probes of the test kubelet: readiness, liveness and startup probes (httpGet, tcpSocket, exec) really
run against the pod's processes, on the pod spec's schedule (scaled by the kubelet's probe_period_scale)."""

from __future__ import annotations

import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class ProbeState:
    spec: dict[str, Any] | None
    started: float = 0.0
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    ok: bool = False


def advance(
    st: ProbeState, now: float, scale: float, kind: str, run: Callable[[dict[str, Any]], bool]
) -> bool:
    """Run one probe if due (`run(spec)` says whether it passed) and update `st`. Returns True when the
    container must be killed: a liveness or startup probe that failed past its failureThreshold."""
    p = st.spec
    if not p:
        return False
    if now < st.started + float(p.get("initialDelaySeconds", 0)) * scale or now < st.next_at:
        return False
    st.next_at = now + float(p.get("periodSeconds", 10)) * scale
    if run(p):
        st.successes += 1
        st.failures = 0
        if st.successes >= int(p.get("successThreshold", 1)):
            st.ok = True
    else:
        st.failures += 1
        st.successes = 0
        if st.failures >= int(p.get("failureThreshold", 3)) or (kind == "readiness" and not st.ok):
            st.ok = False
    return kind != "readiness" and not st.ok and st.failures >= int(p.get("failureThreshold", 3))


def run_probe(
    p: dict[str, Any],
    *,
    port: Callable[[int | str], int | None],
    command: Callable[[list[str]], list[str]],
    env: dict[str, str],
    cwd: str,
) -> bool:
    """One probe attempt. `port` maps a declared port (number or name) to the local one; `command` turns
    an exec probe's command into the argv to run here (variables expanded, paths rewritten)."""
    timeout = float(p.get("timeoutSeconds", 1))
    try:
        if "httpGet" in p:
            h = p["httpGet"]
            local = port(h.get("port", 80))
            scheme = h.get("scheme", "HTTP").lower()
            path = h.get("path", "/")
            req = urllib.request.Request(f"{scheme}://127.0.0.1:{local}{path}")
            for hdr in h.get("httpHeaders") or []:
                req.add_header(hdr["name"], hdr["value"])
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    return 200 <= resp.status < 400
            except urllib.error.HTTPError as exc:
                return 200 <= exc.code < 400
        if "tcpSocket" in p:
            local = port(p["tcpSocket"]["port"])
            with socket.create_connection(("127.0.0.1", int(local or 0)), timeout=timeout):
                return True
        if "exec" in p:
            argv = command(list(p["exec"].get("command") or []))
            res = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=timeout, check=False)
            return res.returncode == 0
    except (OSError, subprocess.SubprocessError, ValueError):
        return False
    return False
