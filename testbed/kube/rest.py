"""A tiny JSON client for the Kubernetes API, used by the harness itself.

Why not the `kubernetes` package: the harness needs raw dicts (it copies pod specs, merges statuses and
rewrites strings), must be thread-safe across many pod threads, and must never hide an HTTP status
behind a model class. `urllib3.PoolManager` is thread-safe and already installed with `kubernetes`.
Tests are free to use `kube.api_client()` (the official client) instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import urllib3

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the apiserver; `status` and the decoded `body` (a Status object) kept."""

    def __init__(self, status: int, body: Any, method: str, path: str) -> None:
        self.status = status
        self.body = body
        reason = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"{method} {path} -> {status}: {reason}")


class Rest:
    """Bearer-token JSON client bound to one apiserver URL and CA file."""

    def __init__(self, url: str, token: str, ca_file: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._pool = urllib3.PoolManager(
            ca_certs=ca_file,
            cert_reqs="CERT_REQUIRED",
            maxsize=16,
            timeout=urllib3.Timeout(connect=5.0, read=timeout),
            retries=False,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        content_type: str = "application/json",
        ok404: bool = False,
    ) -> Any:
        """Send one request; returns the decoded JSON, or None for a 404 when `ok404`."""
        url = self.url + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        resp = self._pool.request(method, url, body=data, headers=headers)
        text = resp.data.decode() if resp.data else ""
        try:
            decoded: Any = json.loads(text) if text else None
        except ValueError:
            decoded = text
        if resp.status == 404 and ok404:
            return None
        if resp.status >= 300:
            raise ApiError(resp.status, decoded, method, path)
        return decoded

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def get_or_none(self, path: str) -> Any:
        return self.request("GET", path, ok404=True)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> Any:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("DELETE", path, body, params=params or None, ok404=True)

    def items(self, path: str, **params: Any) -> list[dict[str, Any]]:
        return list(self.get(path, **params).get("items") or [])

    def watch(self, path: str, timeout_seconds: int = 30, **params: Any) -> Iterator[dict[str, Any]]:
        """Yield watch events (`{"type", "object"}`) until the server closes the stream."""
        query = dict(params, watch="true", timeoutSeconds=timeout_seconds)
        url = f"{self.url}{path}?{urlencode({k: v for k, v in query.items() if v is not None})}"
        resp = self._pool.request(
            "GET",
            url,
            headers={"Authorization": f"Bearer {self.token}"},
            preload_content=False,
            timeout=urllib3.Timeout(connect=5.0, read=timeout_seconds + 10),
        )
        try:
            if resp.status >= 300:
                raise ApiError(resp.status, resp.read().decode(), "WATCH", path)
            buf = b""
            for chunk in resp.stream(65536):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            resp.release_conn()

    def close(self) -> None:
        self._pool.clear()
