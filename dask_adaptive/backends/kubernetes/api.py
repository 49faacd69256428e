"""A small async Kubernetes REST client: only the calls the `kubernetes` backend needs.

Why not the official client: the stock Dask image ships no Kubernetes client library, and nothing may be
pip-installed when the scheduler starts (slow, fragile, needs egress). distributed already depends on
tornado, so these few REST calls are written over tornado's `AsyncHTTPClient`, which never blocks the
scheduler's event loop (the 2017 design called a synchronous client from inside it).

Failure model, because the scheduler must survive an API outage without acting blindly:
- 409, 429 (honouring Retry-After), 5xx, timeouts and connection errors are retried with exponential
  backoff and jitter, inside a bounded time budget; then `KubeApiError` (a `BackendError`) is raised.
- 401 re-reads the service-account token (bound tokens rotate) and retries exactly once.
- other 4xx are raised at once: retrying a 403 or a 404 cannot help.
Every write we make is idempotent (merge-patches of absolute values, deletes where 404 means done), so
retrying a request the server may already have applied is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from dask_adaptive.backends.base import BackendError

logger = logging.getLogger(__name__)

FIELD_MANAGER = "dask-adaptive"
MERGE_PATCH = "application/merge-patch+json"
RETRYABLE_STATUS = frozenset({409, 429, 500, 502, 503, 504})
# Tornado reports timeouts and broken connections as HTTP "599"; no server ever sends it.
TRANSPORT_ERROR = 599
# Re-read the token at least this often even without a 401 (client-go reloads it every minute).
TOKEN_MAX_AGE = 60.0


class KubeApiError(BackendError):
    """A Kubernetes API call failed for good. `status` is the HTTP code (599: never got an answer)."""

    def __init__(self, method: str, path: str, status: int, reason: str = "", message: str = "") -> None:
        self.method, self.path, self.status, self.reason = method, path, status, reason
        self.message = message
        what = f"HTTP {status}" if status != TRANSPORT_ERROR else "no answer"
        detail = f" {reason}" if reason else ""
        super().__init__(f"{method} {path}: {what}{detail}: {message}".rstrip(": "))

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def forbidden(self) -> bool:
        return self.status in (401, 403)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one call tries before giving up. Bounded, so an outage surfaces as an error in seconds."""

    budget: float = 20.0  # seconds from the first attempt after which no retry starts (= adaptive.yaml)
    max_attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 5.0
    request_timeout: float = 10.0  # = adaptive.yaml (a test keeps them equal)
    connect_timeout: float = 5.0


def backoff_delay(attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter for retry number `attempt` (1-based).

    Half fixed, half random ("equal jitter"): many schedulers hitting a recovering apiserver do not retry
    in lockstep, yet every retry still waits a meaningful minimum.
    """
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    return ceiling / 2 + ceiling / 2 * rand()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_wait(
    attempt: int,
    status: int,
    retry_after: float | None,
    elapsed: float,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to sleep before the next attempt, or None to give up. Pure, so the rules are testable.

    A server's Retry-After is honoured (never retried sooner), but only if waiting fits in the budget:
    a 429 asking for a minute turns into an error now rather than a scheduler stuck for a minute.
    """
    if status not in RETRYABLE_STATUS and status != TRANSPORT_ERROR:
        return None
    if attempt >= policy.max_attempts:
        return None
    delay = backoff_delay(attempt, policy, rand)
    if retry_after is not None:
        delay = max(delay, retry_after)
    if elapsed + delay > policy.budget:
        return None
    return delay


def retry_policy(request_timeout: float, retry_budget: float) -> RetryPolicy:
    """The policy for these two tunables; the connect timeout is at most the request timeout."""
    return RetryPolicy(
        budget=retry_budget,
        request_timeout=request_timeout,
        connect_timeout=min(RetryPolicy.connect_timeout, request_timeout),
    )


def in_cluster_url() -> str | None:
    """The apiserver URL from the env every pod gets, or None outside a cluster (the one place it is read)."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host:
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    return f"https://{host}:{port or 443}"


@dataclass
class TokenSource:
    """The bearer token, re-read from its file: kubelet rewrites bound tokens before they expire."""

    path: Path
    clock: Callable[[], float] = time.monotonic
    _token: str | None = field(default=None, init=False)
    _read_at: float = field(default=-1e18, init=False)

    def get(self, fresh: bool = False) -> str:
        # A few hundred bytes from a tmpfs: cheaper than handing it to a thread.
        if fresh or self._token is None or self.clock() - self._read_at > TOKEN_MAX_AGE:
            self._token = self.path.read_text().strip()
            self._read_at = self.clock()
        return self._token


def _status_details(body: bytes) -> tuple[str, str]:
    """(reason, message) from a Kubernetes `Status` body, tolerating anything else."""
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return "", body[:200].decode("utf-8", "replace") if body else ""
    if not isinstance(doc, dict):
        return "", ""
    return str(doc.get("reason", "")), str(doc.get("message", ""))


class KubeApi:
    """Async REST calls against one apiserver, with the retry rules in the module docstring.

    Counters (`calls`, `retries`, `errors`) are plain ints for the metrics module to read.
    """

    def __init__(
        self,
        url: str,
        token_file: str | os.PathLike[str],
        ca_file: str | os.PathLike[str] | None = None,
        *,
        policy: RetryPolicy | None = None,  # None: RetryPolicy's defaults (= adaptive.yaml's)
        field_manager: str = FIELD_MANAGER,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = TokenSource(Path(token_file))
        self.ca_file = str(ca_file) if ca_file and Path(ca_file).exists() else None
        self.policy = policy or RetryPolicy()
        self.field_manager = field_manager
        self._sleep, self._rand = sleep, rand
        self._client: AsyncHTTPClient | None = None
        self.calls = self.retries = self.errors = 0
        self.bytes_received = 0  # response bodies as decoded (after gzip), for the look-cost benchmark

    @classmethod
    def in_cluster(cls, sa_dir: str, url: str, **kwargs: Any) -> tuple[KubeApi, str | None]:
        """A client from the pod's service-account folder, and the pod's own namespace (None if unknown)."""
        base = Path(sa_dir)
        ns_file = base / "namespace"
        namespace = ns_file.read_text().strip() if ns_file.exists() else None
        return cls(url, base / "token", base / "ca.crt", **kwargs), namespace

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- transport -------------------------------------------------------------------------------

    def _http(self) -> AsyncHTTPClient:
        if self._client is None:
            self._client = AsyncHTTPClient(force_instance=True)
        return self._client

    async def _fetch_once(
        self, method: str, url: str, body: bytes | None, content_type: str | None, token: str
    ) -> HTTPResponse:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=body,
            request_timeout=self.policy.request_timeout,
            connect_timeout=self.policy.connect_timeout,
            ca_certs=self.ca_file,
            follow_redirects=False,
            allow_nonstandard_methods=True,
        )
        return await self._http().fetch(request, raise_error=False)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        decode: bool = True,
    ) -> Any:
        """One API call with retries; returns the decoded JSON body (`decode=False`: the raw bytes, for
        a caller that parses in pieces) or raises KubeApiError."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}{path}{query}"
        data = json.dumps(body).encode() if body is not None else None
        self.calls += 1
        started = time.monotonic()
        attempt, refreshed = 0, False
        try:
            token = self.token.get()
        except OSError as e:
            self.errors += 1
            raise KubeApiError(method, path, 401, "NoToken", f"cannot read token: {e}") from e
        while True:
            attempt += 1
            status, reason, message, retry_after = TRANSPORT_ERROR, "", "", None
            try:
                response = await self._fetch_once(method, url, data, content_type if data else None, token)
            except (HTTPClientError, OSError) as e:  # timeouts, refused/dropped connections, TLS errors
                message = str(e) or type(e).__name__
            else:
                status = response.code
                self.bytes_received += len(response.body or b"")
                if 200 <= status < 300:
                    if not decode:
                        return response.body or b""
                    return json.loads(response.body) if response.body else {}
                reason, message = _status_details(response.body or b"")
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if status == 401 and not refreshed:
                    refreshed = True
                    with contextlib.suppress(OSError):  # keep the old token; the retry then fails cleanly
                        token = self.token.get(fresh=True)
                    logger.info(
                        "kubernetes API answered 401 to %s %s; retrying once with a re-read token",
                        method,
                        path,
                    )
                    continue
            wait = retry_wait(
                attempt, status, retry_after, time.monotonic() - started, self.policy, self._rand
            )
            if wait is None:
                self.errors += 1
                raise KubeApiError(method, path, status, reason, message)
            self.retries += 1
            logger.info(
                "kubernetes API %s %s failed (%s %s); retry %d in %.2fs",
                method,
                path,
                status,
                reason or message,
                attempt,
                wait,
            )
            await self._sleep(wait)

    # -- the calls the backend uses --------------------------------------------------------------

    @staticmethod
    def _deployment_path(namespace: str, name: str) -> str:
        return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", self._deployment_path(namespace, name))

    async def get_scale(self, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", f"{self._deployment_path(namespace, name)}/scale")

    async def patch_scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Set spec.replicas to an absolute value (idempotent, so a retried PATCH cannot double-count)."""
        return await self.request(
            "PATCH",
            f"{self._deployment_path(namespace, name)}/scale",
            {"spec": {"replicas": int(replicas)}},
            params={"fieldManager": self.field_manager},
            content_type=MERGE_PATCH,
        )

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        doc = await self.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector}
        )
        return list(doc.get("items") or [])

    async def list_pods_page(
        self, namespace: str, selector: str, limit: int, continue_token: str = ""
    ) -> bytes:
        """One page of a chunked pod list, unparsed: the watch cache parses it in pieces."""
        params = {"labelSelector": selector, "limit": str(limit)}
        if continue_token:
            params["continue"] = continue_token
        return await self.request("GET", f"/api/v1/namespaces/{namespace}/pods", params=params, decode=False)

    async def watch_pods(
        self,
        namespace: str,
        selector: str,
        resource_version: str,
        timeout_seconds: int,
        on_chunk: Callable[[bytes], None],
    ) -> tuple[int, bytes]:
        """One watch of the pods from `resource_version`, with bookmarks; each piece of the stream goes
        to `on_chunk` as it arrives. One attempt (the watch cache owns backoff and relists). Returns the
        HTTP status and, if it is not 200, the body (a Status); 599: the stream broke or never came."""
        params = {
            "labelSelector": selector,
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
        }
        url = f"{self.url}/api/v1/namespaces/{namespace}/pods?{urllib.parse.urlencode(params)}"
        status, error = 0, bytearray()

        def header(line: str) -> None:
            nonlocal status
            if line.startswith("HTTP/"):
                status = int(line.split(" ", 2)[1])

        def body(chunk: bytes) -> None:
            self.bytes_received += len(chunk)
            if status == 200:
                on_chunk(chunk)
            else:
                error.extend(chunk[: 65536 - len(error)])

        self.calls += 1
        try:
            token = self.token.get()
        except OSError as e:
            return 401, str(e).encode()
        request = HTTPRequest(
            url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            request_timeout=timeout_seconds + self.policy.request_timeout,
            connect_timeout=self.policy.connect_timeout,
            ca_certs=self.ca_file,
            follow_redirects=False,
            header_callback=header,
            streaming_callback=body,
        )
        try:
            response = await self._http().fetch(request, raise_error=False)
        except (HTTPClientError, OSError) as e:
            return TRANSPORT_ERROR, str(e).encode()
        if response.code == 401:
            with contextlib.suppress(OSError):
                self.token.get(fresh=True)  # bound tokens rotate: the next attempt reads the new one
        if response.code == TRANSPORT_ERROR:
            return TRANSPORT_ERROR, str(response.error or "stream broken").encode()
        return response.code, bytes(error)

    async def annotate_pod(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> dict[str, Any]:
        return await self.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            {"metadata": {"annotations": annotations}},
            params={"fieldManager": self.field_manager},
            content_type=MERGE_PATCH,
        )

    async def delete_pod(self, namespace: str, name: str) -> bool:
        """Delete a pod; False if it was already gone (so a retried delete is not an error)."""
        try:
            await self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")
        except KubeApiError as e:
            if e.not_found:
                return False
            raise
        return True

    async def create_event(self, namespace: str, event: dict[str, Any]) -> dict[str, Any]:
        return await self.request("POST", f"/api/v1/namespaces/{namespace}/events", event)

    async def can_i(
        self, namespace: str, verb: str, group: str, resource: str, subresource: str = "", name: str = ""
    ) -> tuple[bool, str]:
        """SelfSubjectAccessReview: may our own identity do this? Returns (allowed, apiserver's reason)."""
        attributes = {"namespace": namespace, "verb": verb, "group": group, "resource": resource}
        if subresource:
            attributes["subresource"] = subresource
        if name:
            attributes["name"] = name
        doc = await self.request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            },
        )
        status = doc.get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or status.get("evaluationError") or "")
