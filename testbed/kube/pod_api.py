"""A local stand-in apiserver for the look-cost benchmark: the worker pods, listed and watched.

Why: measuring what one look of the kubernetes backend costs at 1000 worker pods needs 1000 pods, and
the real control plane here holds a few hundred at most in reasonable time. This server answers exactly
the calls the backend makes (access reviews, the Deployment, /scale, pod lists with `limit`/`continue`,
pod watches with bookmarks), serving pods built from the program's own worker Deployment the way the
apiserver and a kubelet fill them in (`realistic_pod`): the bytes and the parse cost are a real pod's.
Large list answers are gzipped as the apiserver does (above 128 KiB, when the client accepts gzip).

It runs in its own process (`python -m testbed.kube.pod_api --pods-file F`, prints its port), so its
own work never shows up on the measured event loop. `GET /control/stats` returns the body bytes it
sent (as on the wire) and its request count; `POST /control/modify?n=K` changes K pods (watchers get
MODIFIED events).
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GZIP_ABOVE = 128 * 1024  # the apiserver's threshold for compressing a response


def realistic_pod(deployment: dict[str, Any], i: int, resource_version: int) -> dict[str, Any]:
    """Pod `i` of `deployment` as a 1.20 apiserver returns it once a kubelet runs it: the template, the
    defaults the apiserver adds, ownership, managedFields of the two writers, and a Running status."""
    template = copy.deepcopy(deployment["spec"]["template"])
    meta, spec = template["metadata"], template["spec"]
    name = deployment["metadata"]["name"]
    namespace = deployment["metadata"].get("namespace", "work")
    rs, node = f"{name}-5d8c7b9f4", f"ip-10-0-{i // 200}-{i % 200}.ec2.internal"
    pod_name, ip = f"{rs}-{i:05x}", f"10.1.{i // 250}.{i % 250 + 1}"
    stamp = "2026-12-07T10:00:00Z"
    fields = {"f:metadata": {"f:labels": {f"f:{k}": {} for k in meta.get("labels", {})}}, "f:spec": {}}
    meta.update(
        name=pod_name,
        generateName=f"{rs}-",
        namespace=namespace,
        uid=f"6f0c{i:04x}-1b2c-4d5e-8f90-{i:012x}",
        resourceVersion=str(resource_version),
        creationTimestamp=stamp,
        labels={**meta.get("labels", {}), "pod-template-hash": "5d8c7b9f4"},
        ownerReferences=[
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": rs,
                "uid": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        managedFields=[
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "v1",
                "time": stamp,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields,
            },
            {
                "manager": "kubelet",
                "operation": "Update",
                "apiVersion": "v1",
                "time": stamp,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:podIP": {}}},
            },
        ],
    )
    for c in spec["containers"]:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("volumeMounts", []).append(
            {
                "name": "kube-api-access",
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            }
        )
    spec.update(
        nodeName=node,
        restartPolicy="Always",
        dnsPolicy="ClusterFirst",
        schedulerName="default-scheduler",
        serviceAccountName=spec.get("serviceAccountName", "default"),
        enableServiceLinks=True,
        priority=0,
        preemptionPolicy="PreemptLowerPriority",
        terminationGracePeriodSeconds=spec.get("terminationGracePeriodSeconds", 30),
        tolerations=[
            *spec.get("tolerations", []),
            *(
                {
                    "key": f"node.kubernetes.io/{k}",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
                for k in ("not-ready", "unreachable")
            ),
        ],
        volumes=[
            *spec.get("volumes", []),
            {
                "name": "kube-api-access",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                },
            },
        ],
    )
    conditions = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
        for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    statuses = [
        {
            "name": c["name"],
            "state": {"running": {"startedAt": stamp}},
            "lastState": {},
            "ready": True,
            "restartCount": 0,
            "image": c["image"],
            "imageID": f"docker-pullable://{c['image']}@sha256:{'ab' * 32}",
            "containerID": f"containerd://{i:064x}",
            "started": True,
        }
        for c in spec["containers"]
    ]
    status = {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": f"10.0.{i // 200}.{i % 200}",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": stamp,
        "containerStatuses": statuses,
        "qosClass": "Guaranteed",
    }
    return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": spec, "status": status}


class PodApi:
    """The state the handler serves: pods in order, the current resourceVersion, watchers' queues."""

    def __init__(self, deployment: dict[str, Any], n: int, bookmark_seconds: float) -> None:
        self.deployment = deployment
        self.rv = 1000
        self.pods = [realistic_pod(deployment, i, self.rv + i) for i in range(n)]
        self.encoded = [json.dumps(p).encode() for p in self.pods]  # a list answer joins these: fast enough
        self.rv += n
        self.bookmark_seconds = bookmark_seconds
        self.lock = threading.Lock()
        self.watchers: list[list[bytes]] = []
        self.history: list[tuple[int, bytes]] = []  # (resourceVersion, event line): a watch replays it
        self.sent = self.requests = 0

    def modify(self, k: int) -> None:
        with self.lock:
            for pod in self.pods[:k]:
                self.rv += 1
                pod["metadata"]["resourceVersion"] = str(self.rv)
                pod["metadata"].setdefault("annotations", {})["bench/touched"] = str(self.rv)
                self.encoded[self.pods.index(pod)] = json.dumps(pod).encode()
                line = json.dumps({"type": "MODIFIED", "object": pod}).encode() + b"\n"
                self.history.append((self.rv, line))
                for queue in self.watchers:
                    queue.append(line)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: PodApi

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, code: int, doc: Any) -> None:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        gz = len(body) > GZIP_ABOVE and "gzip" in (self.headers.get("Accept-Encoding") or "")
        if gz:
            body = gzip.compress(body, 1)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        if gz:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with self.api.lock:
            self.api.sent += len(body)
            self.api.requests += 1

    def do_POST(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if url.path == "/control/modify":
            self.api.modify(int(urllib.parse.parse_qs(url.query).get("n", ["1"])[0]))
            return self._send(200, {})
        if url.path.endswith("/selfsubjectaccessreviews"):
            return self._send(201, {**body, "status": {"allowed": True}})
        return self._send(201, body)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        if url.path == "/control/stats":
            return self._send(200, {"sent": self.api.sent, "requests": self.api.requests})
        if url.path.endswith("/scale"):
            return self._send(200, {"kind": "Scale", "spec": {"replicas": len(self.api.pods)}})
        if "/deployments/" in url.path:
            return self._send(200, self.api.deployment)
        if url.path.endswith("/pods") and query.get("watch") in ("1", "true"):
            return self._watch(query)
        if url.path.endswith("/pods"):
            with self.api.lock:
                start, limit = int(query.get("continue") or 0), int(query.get("limit") or 0)
                end = start + limit if limit else len(self.api.pods)
                items = b",".join(self.api.encoded[start:end])
                meta = {"resourceVersion": str(self.api.rv)}
            if end < len(self.api.pods):
                meta["continue"] = str(end)
            head = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": meta})[:-1].encode()
            return self._send(200, head + b', "items": [' + items + b"]}")
        return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
        with self.api.lock:
            self.api.sent += len(data)

    def _watch(self, query: dict[str, str]) -> None:
        """Events as they happen, a BOOKMARK every `bookmark_seconds` and 2 s before the timeout."""
        timeout = float(query.get("timeoutSeconds") or 1800)
        since = int(query.get("resourceVersion") or 0)
        with self.api.lock:
            queue = [line for rv, line in self.api.history if rv > since]
            self.api.watchers.append(queue)
            self.api.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        started = last = time.monotonic()
        try:
            while (now := time.monotonic()) < started + timeout:
                with self.api.lock:
                    pending, queue[:] = list(queue), []
                for line in pending:
                    self._chunk(line)
                if now - last >= self.api.bookmark_seconds or now >= started + timeout - 2 > last:
                    last = now
                    mark = {
                        "kind": "Pod",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(self.api.rv)},
                    }
                    self._chunk(json.dumps({"type": "BOOKMARK", "object": mark}).encode() + b"\n")
                time.sleep(0.01)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            with self.api.lock:
                self.api.watchers.remove(queue)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deployment-file", required=True, help="the worker Deployment as JSON")
    ap.add_argument("--pods", type=int, required=True)
    ap.add_argument("--bookmark-seconds", type=float, default=60.0)
    args = ap.parse_args(argv)
    with open(args.deployment_file) as f:
        deployment = json.load(f)
    Handler.api = PodApi(deployment, args.pods, args.bookmark_seconds)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
