"""A fault-injection proxy between a Kubernetes client (the preload) and the real apiserver.

Why: the preload must survive what real clusters do to clients — optimistic-concurrency conflicts
(409), API priority-and-fairness throttling (429 + Retry-After), apiserver restarts (500, dropped
connections), slow etcd (slow responses) and token rotation (401 for the old token). A real apiserver
produces these rarely and never on cue; this proxy produces them on cue, in front of the real one.

The proxy terminates TLS with a certificate for 127.0.0.1 signed by the cluster CA, so a client that
trusts the ServiceAccount `ca.crt` accepts it unchanged; point the client at `proxy.port` (for pods run
by the kubelet harness: `Kubelet(..., api_port=proxy.port)`). HTTP/1.1 only (ALPN offers http/1.1);
watch streams are relayed as they arrive.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

from testbed.kube.control_plane import sign_serving_cert

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "host",
}  # fmt: skip
REASONS = {
    401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}  # fmt: skip


@dataclass
class Rule:
    """One armed fault. Matches method (regex, full match, case-insensitive), path (regex searched in
    the path with its query string) and optionally the bearer token; fires for the next `times`
    matching requests (None: unlimited) and/or until `duration` seconds after arming."""

    action: str  # "status" | "delay" | "drop" | "expire"
    status: int = 0
    method: str | None = None
    path: str = ".*"
    times: int | None = 1
    duration: float | None = None
    token: str | None = None
    delay: float = 0.0
    retry_after: int | None = None
    reset: bool = False
    message: str = ""
    hits: int = 0
    armed_at: float = field(default_factory=time.monotonic)
    active: bool = True

    def matches(self, method: str, path: str, token: str | None) -> bool:
        if not self.active:
            return False
        if self.duration is not None and time.monotonic() - self.armed_at > self.duration:
            self.active = False
            return False
        if self.times is not None and self.hits >= self.times:
            self.active = False
            return False
        if self.method and not re.fullmatch(self.method, method, re.IGNORECASE):
            return False
        if not re.search(self.path, path):
            return False
        return not (self.token is not None and token != self.token)

    def disarm(self) -> None:
        self.active = False

    @property
    def label(self) -> str:
        return str(self.status) if self.action == "status" else self.action


class FaultProxy:
    """TLS-terminating HTTP/1.1 reverse proxy to `upstream` with armable faults.

    Counters: `counts` (Counter keyed by "409", "429", "500", "401", "delay", "drop", "passed"),
    `log` (list of (method, path, outcome)), `injected` and `passed` totals.
    """

    def __init__(self, upstream: str, ca_file: str, ca_key_file: str, workdir: Path) -> None:
        u = urlparse(upstream)
        self.upstream_host = u.hostname or "127.0.0.1"
        self.upstream_port = u.port or 443
        self.ca_file = ca_file
        self.ca_key_file = ca_key_file
        self.workdir = workdir
        self.rules: list[Rule] = []
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._closed = False
        self.bytes_out = 0  # response bytes relayed to clients, as on the wire (the look-cost benchmark)
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def injected(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "passed")

    @property
    def passed(self) -> int:
        return self.counts["passed"]

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        cert, key = self.workdir / "fault-proxy.crt", self.workdir / "fault-proxy.key"
        if not (cert.exists() and key.exists()):  # one key per workdir: RSA generation costs ~1 s
            cert, key = sign_serving_cert(
                Path(self.ca_file), Path(self.ca_key_file), self.workdir, "fault-proxy"
            )
        self._server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_ctx.load_cert_chain(str(cert), str(key))
        self._server_ctx.set_alpn_protocols(["http/1.1"])
        self._client_ctx = ssl.create_default_context(cafile=self.ca_file)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))  # free port: concurrent suites share the machine
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._closed = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        with self._lock:
            for c in list(self._conns):
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    c.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- arming --------------------------------------------------------------------------------------
    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def inject(
        self,
        status: int,
        *,
        method: str | None = None,
        path: str = ".*",
        times: int | None = 1,
        duration: float | None = None,
        token: str | None = None,
        retry_after: int | None = None,
        message: str = "",
    ) -> Rule:
        """Answer matching requests with a Kubernetes `Status` error of code `status` (not forwarded)."""
        return self.add(
            Rule("status", status=status, method=method, path=path, times=times, duration=duration,
                 token=token, retry_after=retry_after, message=message)
        )  # fmt: skip

    def conflict(self, **kw: object) -> Rule:
        """409 Conflict, as a PUT with a stale resourceVersion gets."""
        return self.inject(409, **kw)  # type: ignore[arg-type]

    def throttle(self, retry_after: int = 1, **kw: object) -> Rule:
        """429 TooManyRequests with Retry-After, as API priority and fairness answers."""
        return self.inject(429, retry_after=retry_after, **kw)  # type: ignore[arg-type]

    def server_error(self, status: int = 500, **kw: object) -> Rule:
        return self.inject(status, **kw)  # type: ignore[arg-type]

    def reject_token(self, token: str, **kw: object) -> Rule:
        """401 for every request bearing `token` (a token rotated away): unlimited unless `times`."""
        kw.setdefault("times", None)
        return self.inject(401, token=token, **kw)  # type: ignore[arg-type]

    def slow(self, delay: float, **kw: object) -> Rule:
        """Hold matching requests `delay` seconds, then forward them."""
        return self.add(Rule("delay", delay=delay, **kw))  # type: ignore[arg-type]

    def drop(self, *, reset: bool = False, **kw: object) -> Rule:
        """Close the connection after reading the request, with no response (`reset`: TCP RST)."""
        return self.add(Rule("drop", reset=reset, **kw))  # type: ignore[arg-type]

    def cut(self) -> int:
        """Break every open client connection now (watch streams included), as an apiserver restart or
        a load balancer's idle timeout does; the proxy keeps accepting new ones. Returns how many."""
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        return len(conns)

    def expire_watch(self, **kw: object) -> Rule:
        """Answer matching watches 200 with one ERROR event of code 410 (the resourceVersion is too
        old), then end the stream: what an apiserver whose watch cache moved on sends."""
        return self.add(Rule("expire", **kw))  # type: ignore[arg-type]

    def clear(self) -> None:
        with self._lock:
            for r in self.rules:
                r.active = False
            self.rules.clear()

    @contextlib.contextmanager
    def fault(self, rule: Rule) -> Iterator[Rule]:
        """`with proxy.fault(proxy.throttle(...)):` — disarmed on exit."""
        try:
            yield rule
        finally:
            rule.disarm()

    def _match(self, method: str, path: str, token: str | None) -> Rule | None:
        with self._lock:
            for r in self.rules:
                if r.matches(method, path, token):
                    r.hits += 1
                    return r
        return None

    def _record(self, method: str, path: str, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
            self.log.append((method, path, outcome))

    # -- serving -------------------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._sock is not None
        while not self._closed:
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        with self._lock:
            self._conns.add(raw)
        upstream: http.client.HTTPSConnection | None = None
        conn: ssl.SSLSocket | None = None
        try:
            conn = self._server_ctx.wrap_socket(raw, server_side=True)
            with self._lock:  # wrapping detached `raw` from its descriptor: `conn` is the socket now
                self._conns.discard(raw)
                self._conns.add(conn)
            rfile = conn.makefile("rb")
            while not self._closed:
                req = _read_request(rfile)
                if req is None:
                    break
                method, path, headers, body = req
                auth = headers.get("authorization", "")
                token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
                rule = self._match(method, path, token)
                if rule is not None and rule.action == "drop":
                    self._record(method, path, "drop")
                    if rule.reset:
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                if rule is not None and rule.action == "status":
                    self._record(method, path, str(rule.status))
                    _write_status(conn, rule)
                    if headers.get("connection", "").lower() == "close":
                        break
                    continue
                if rule is not None and rule.action == "expire":
                    self._record(method, path, "expire")
                    _write_expired(conn)
                    break
                if rule is not None and rule.action == "delay":
                    self._record(method, path, "delay")
                    time.sleep(rule.delay)
                else:
                    self._record(method, path, "passed")
                if "upgrade" in headers:
                    conn.sendall(
                        b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    break
                if upstream is None:
                    upstream = http.client.HTTPSConnection(
                        self.upstream_host, self.upstream_port, context=self._client_ctx, timeout=None
                    )
                keep = self._forward(conn, upstream, method, path, headers, body)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError):
            pass
        finally:
            if upstream is not None:
                upstream.close()
            for sock in (raw, conn):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
            with self._lock:
                self._conns.discard(raw)
                if conn is not None:
                    self._conns.discard(conn)

    def _forward(
        self,
        conn: ssl.SSLSocket,
        upstream: http.client.HTTPSConnection,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
    ) -> bool:
        fwd = {k: v for k, v in headers.items() if k not in HOP_BY_HOP}
        fwd["Host"] = f"{self.upstream_host}:{self.upstream_port}"
        if body or method in ("POST", "PUT", "PATCH"):
            fwd["Content-Length"] = str(len(body))
        try:
            upstream.request(method, path, body=body or None, headers=fwd)
            resp = upstream.getresponse()
        except (OSError, http.client.HTTPException):
            upstream.close()
            conn.sendall(_status_bytes(502, "upstream apiserver unreachable", None))
            return False
        out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
        no_body = method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        length = resp.getheader("content-length")
        head = f"HTTP/1.1 {resp.status} {resp.reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in out_headers)
        if no_body:
            conn.sendall((head + "Content-Length: 0\r\n\r\n").encode("latin-1"))
            resp.read()
        elif length is not None:
            conn.sendall((head + f"Content-Length: {length}\r\n\r\n").encode("latin-1"))
            while chunk := resp.read1(65536):
                conn.sendall(chunk)
                self.bytes_out += len(chunk)
        else:  # chunked or close-delimited (watch streams): relay pieces as they arrive
            conn.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode("latin-1"))
            while chunk := resp.read1(65536):
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.bytes_out += len(chunk)
            conn.sendall(b"0\r\n\r\n")
        return not resp.will_close


def _read_request(rfile: IO[bytes]) -> tuple[str, str, dict[str, str], bytes] | None:
    line = rfile.readline(65537)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(65537)
    if not line:
        return None
    method, path, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        h = rfile.readline(65537)
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int(rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            parts.append(rfile.read(size))
            rfile.readline()
        body = b"".join(parts)
    elif headers.get("content-length"):
        body = rfile.read(int(headers["content-length"]))
    return method, path, headers, body


def _status_bytes(code: int, message: str, retry_after: int | None) -> bytes:
    reason = REASONS.get(code, "InternalError")
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message or f"injected by testbed/kube/faults.py: {reason}",
        "reason": reason,
        "code": code,
    }
    if retry_after is not None:
        status["details"] = {"retryAfterSeconds": retry_after}
    body = json.dumps(status).encode()
    extra = f"Retry-After: {retry_after}\r\n" if retry_after is not None else ""
    head = (
        f"HTTP/1.1 {code} {http.client.responses.get(code, reason)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body


def _write_expired(conn: ssl.SSLSocket) -> None:
    message = "too old resource version (injected by testbed/kube/faults.py)"
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 410,
              "reason": "Expired", "message": message}  # fmt: skip
    line = json.dumps({"type": "ERROR", "object": status}).encode() + b"\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    conn.sendall(head + f"{len(line):x}\r\n".encode() + line + b"\r\n0\r\n\r\n")


def _write_status(conn: ssl.SSLSocket, rule: Rule) -> None:
    conn.sendall(_status_bytes(rule.status, rule.message, rule.retry_after))
