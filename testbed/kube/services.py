"""Services of the test kubelet (our kube-proxy): a loopback forwarder per Service port, and the rules
that rewrite Service DNS names in a pod's command line and env to those forwarders."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from typing import TYPE_CHECKING, Any

from testbed.kube.rewriting import Rewriter

if TYPE_CHECKING:
    from testbed.kube.kubelet import Kubelet


class ServiceForwarder:
    """A loopback TCP listener standing for one Service port; each connection goes to a Ready pod.

    Resolving at connect time (not at pod start) means a client started before its server, or a server
    restarted on another local port, behaves as with a ClusterIP: connections fail until a backend is
    Ready, then succeed.
    """

    def __init__(
        self, kubelet: Kubelet, namespace: str, service: dict[str, Any], port: dict[str, Any]
    ) -> None:
        self.kubelet = kubelet
        self.namespace = namespace
        self.service_name = service["metadata"]["name"]
        self.selector: dict[str, str] = dict(service["spec"].get("selector") or {})
        self.port_spec = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self._rr = 0
        self._closed = False
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(
            target=self._accept, name=f"svc-{self.service_name}-{port['port']}", daemon=True
        ).start()

    def backend(self) -> int | None:
        """Local port of a Ready pod matching the selector (round robin), or None."""
        target = self.port_spec.get("targetPort", self.port_spec["port"])
        candidates = []
        for runner in self.kubelet.runners():
            labels = runner.pod["metadata"].get("labels") or {}
            if (
                runner.namespace != self.namespace
                or not self.selector
                or not runner.ready
                or runner.terminating
            ):
                continue
            if all(labels.get(k) == v for k, v in self.selector.items()):
                local = runner.resolve_port(target)
                if local:
                    candidates.append(local)
        if not candidates:
            return None
        self._rr += 1
        return sorted(candidates)[self._rr % len(candidates)]

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        port = self.backend()
        if port is None:
            client.close()  # like a ClusterIP with no ready endpoints: the connection fails
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._conns.update((client, upstream))
        t = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
        t.start()
        self._pipe(client, upstream)
        t.join()
        with self._lock:
            self._conns.difference_update((client, upstream))
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.close()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
        with self._lock:
            for s in list(self._conns):
                with contextlib.suppress(OSError):
                    s.close()


class Services:
    """The Service forwarders of one kubelet, created on first use and kept until `close()`."""

    def __init__(self, kubelet: Kubelet) -> None:
        self.kubelet = kubelet
        self._forwarders: dict[tuple[str, str, int], ServiceForwarder] = {}
        self._lock = threading.Lock()

    def rules(self, namespace: str) -> Rewriter:
        """Rules mapping `<svc>[.<ns>[.svc[.cluster.local]]]:<port>` to a local forwarder (built at pod
        start, from the Services that exist then)."""
        rules = Rewriter()
        services = self.kubelet.rest.items("/api/v1/services")
        for svc in services:
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            hosts = [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc", f"{name}.{ns}"]
            if ns == namespace:
                hosts.append(name)
            for p in svc["spec"].get("ports") or []:
                if ns == "default" and name == "kubernetes":
                    local = self.kubelet.api_port
                else:
                    local = self.forwarder(ns, svc, p).port
                for host in hosts:
                    rules.add(rf"(?<![\w.\-]){re.escape(host)}:{p['port']}(?!\d)", f"127.0.0.1:{local}")
            for host in hosts[:2]:  # bare FQDNs (no port) resolve to loopback too
                rules.add(rf"(?<![\w.\-]){re.escape(host)}(?![\w\-]|\.[\w])", "127.0.0.1")
        return rules

    def forwarder(self, namespace: str, svc: dict[str, Any], port: dict[str, Any]) -> ServiceForwarder:
        key = (namespace, svc["metadata"]["name"], int(port["port"]))
        with self._lock:
            fwd = self._forwarders.get(key)
            if fwd is None:
                fwd = self._forwarders[key] = ServiceForwarder(self.kubelet, namespace, svc, port)
            else:
                fwd.selector = dict(svc["spec"].get("selector") or {})
                fwd.port_spec = port
            return fwd

    def address(self, namespace: str, service: str, port: int) -> str:
        """`127.0.0.1:<port>` reaching `service:port` from the test process (like a ClusterIP)."""
        svc = self.kubelet.rest.get(f"/api/v1/namespaces/{namespace}/services/{service}")
        p = next(p for p in svc["spec"]["ports"] if int(p["port"]) == port)
        return f"127.0.0.1:{self.forwarder(namespace, svc, p).port}"

    def close(self) -> None:
        with self._lock:
            forwarders = list(self._forwarders.values())
        for fwd in forwarders:
            fwd.close()
