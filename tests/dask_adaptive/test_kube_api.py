"""The REST client against a scripted local apiserver: retries, Retry-After, 401 re-read, timeouts, errors."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import dask.config
import pytest

from dask_adaptive.backends.base import BackendError
from dask_adaptive.backends.kubernetes.api import (
    KubeApi,
    KubeApiError,
    RetryPolicy,
    TokenSource,
    backoff_delay,
    in_cluster_url,
    parse_retry_after,
    retry_policy,
    retry_wait,
)
from testbed.dask.kube_fixtures import (
    Answer,
    FakeApiServer,
    make_ca_and_server_cert,
    status_body,
    write_service_account,
)

SCALE = {"kind": "Scale", "apiVersion": "autoscaling/v1", "spec": {"replicas": 2}, "status": {"replicas": 2}}
FAST = RetryPolicy(
    budget=30.0, max_attempts=5, base_delay=0.01, max_delay=0.05, request_timeout=2.0, connect_timeout=1.0
)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


class Sleeps:
    """Records the backoff the client asks for, without waiting (the rules are tested, not the clock)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def client(
    url: str,
    tmp_path: Path,
    token: str = "tok-1",
    policy: RetryPolicy = FAST,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    ca: Path | None = None,
) -> KubeApi:
    sa = write_service_account(tmp_path / "sa", token, ca=ca)
    return KubeApi(url, sa / "token", sa / "ca.crt", policy=policy, sleep=sleep or Sleeps())


async def with_server(script: list[Answer], body: Callable[[FakeApiServer], Awaitable[Any]]) -> Any:
    async with FakeApiServer(script) as fake:
        result = await body(fake)
        assert not fake.mismatches, fake.mismatches
        return result


# -- the calls: exact method, path, query, content type, body --------------------------------------


def test_get_scale_sends_bearer_token_and_decodes_json(tmp_path):
    async def body(fake):
        api = client(fake.url, tmp_path)
        try:
            return await api.get_scale("ns1", "workers"), fake.seen
        finally:
            await api.close()

    doc, seen = run(
        with_server(
            [Answer(200, SCALE, method="GET", path="/apis/apps/v1/namespaces/ns1/deployments/workers/scale")],
            body,
        )
    )
    assert doc["spec"]["replicas"] == 2
    assert seen[0].headers["Authorization"] == "Bearer tok-1"


def test_patch_scale_is_a_merge_patch_with_our_field_manager(tmp_path):
    async def body(fake):
        api = client(fake.url, tmp_path)
        try:
            await api.patch_scale("ns1", "workers", 5)
            return fake.seen[0]
        finally:
            await api.close()

    seen = run(with_server([Answer(200, SCALE, method="PATCH")], body))
    assert seen.headers["Content-Type"] == "application/merge-patch+json"
    assert seen.query == {"fieldManager": ["dask-adaptive"]}
    assert seen.body == {"spec": {"replicas": 5}}


def test_list_annotate_delete_event_and_access_review_paths(tmp_path):
    pods = {"kind": "PodList", "items": [{"metadata": {"name": "w-1"}}]}
    script = [
        Answer(200, pods, method="GET", path="/api/v1/namespaces/ns1/pods"),
        Answer(200, {}, method="PATCH", path="/api/v1/namespaces/ns1/pods/w-1"),
        Answer(200, {}, method="DELETE", path="/api/v1/namespaces/ns1/pods/w-1"),
        Answer(404, status_body(404, "NotFound"), method="DELETE", path="/api/v1/namespaces/ns1/pods/w-2"),
        Answer(201, {"metadata": {"name": "e"}}, method="POST", path="/api/v1/namespaces/ns1/events"),
        Answer(
            201,
            {"status": {"allowed": False, "reason": "no rule"}},
            method="POST",
            path="/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        ),
    ]

    async def body(fake):
        api = client(fake.url, tmp_path)
        try:
            items = await api.list_pods("ns1", "app=dask,component=worker")
            await api.annotate_pod("ns1", "w-1", {"controller.kubernetes.io/pod-deletion-cost": "-100"})
            gone = await api.delete_pod("ns1", "w-1"), await api.delete_pod("ns1", "w-2")
            await api.create_event("ns1", {"reason": "ScaleDown"})
            allowed = await api.can_i("ns1", "patch", "apps", "deployments", "scale", "workers")
            return items, gone, allowed, fake.seen
        finally:
            await api.close()

    items, gone, allowed, seen = run(with_server(script, body))
    assert [p["metadata"]["name"] for p in items] == ["w-1"]
    assert seen[0].query == {"labelSelector": ["app=dask,component=worker"]}
    assert seen[1].body == {
        "metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-100"}}
    }
    assert seen[1].headers["Content-Type"] == "application/merge-patch+json"
    assert gone == (True, False)  # 404 on delete means "already gone", not an error
    assert allowed == (False, "no rule")
    assert seen[5].body["spec"]["resourceAttributes"] == {
        "namespace": "ns1",
        "verb": "patch",
        "group": "apps",
        "resource": "deployments",
        "subresource": "scale",
        "name": "workers",
    }


# -- retries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_until_success(tmp_path, status):
    sleeps = Sleeps()

    async def body(fake):
        api = client(fake.url, tmp_path, sleep=sleeps)
        try:
            return await api.get_scale("ns", "d"), api.retries, api.errors, len(fake.seen)
        finally:
            await api.close()

    script = [
        Answer(status, status_body(status, "Busy")),
        Answer(status, status_body(status, "Busy")),
        Answer(200, SCALE),
    ]
    doc, retries, errors, requests = run(with_server(script, body))
    assert doc == SCALE
    assert (retries, errors, requests) == (2, 0, 3)
    assert len(sleeps.calls) == 2 and all(s > 0 for s in sleeps.calls)


def test_retry_after_is_honoured(tmp_path):
    sleeps = Sleeps()

    async def body(fake):
        api = client(fake.url, tmp_path, sleep=sleeps)
        try:
            return await api.get_scale("ns", "d")
        finally:
            await api.close()

    script = [
        Answer(429, status_body(429, "TooManyRequests"), headers={"Retry-After": "3"}),
        Answer(200, SCALE),
    ]
    assert run(with_server(script, body)) == SCALE
    assert sleeps.calls == [3.0]  # never sooner than the server asked, though backoff alone is ~0.01 s


def test_retry_after_beyond_the_budget_fails_now_instead_of_stalling(tmp_path):
    async def body(fake):
        api = client(fake.url, tmp_path, policy=RetryPolicy(budget=5.0, base_delay=0.01))
        try:
            with pytest.raises(KubeApiError) as err:
                await api.get_scale("ns", "d")
            return err.value, len(fake.seen), api.errors
        finally:
            await api.close()

    script = [
        Answer(429, status_body(429, "TooManyRequests"), headers={"Retry-After": "120"}),
        Answer(200, SCALE),
    ]
    err, requests, errors = run(with_server(script, body))
    assert (err.status, err.reason, requests, errors) == (429, "TooManyRequests", 1, 1)
    assert isinstance(err, BackendError)


def test_persistent_5xx_gives_up_after_max_attempts(tmp_path):
    async def body(fake):
        api = client(fake.url, tmp_path)
        try:
            with pytest.raises(KubeApiError) as err:
                await api.patch_scale("ns", "d", 3)
            return err.value, len(fake.seen), api.retries, api.errors
        finally:
            await api.close()

    script = [Answer(503, status_body(503, "ServiceUnavailable", "etcd down"))] * 10
    err, requests, retries, errors = run(with_server(script, body))
    assert (err.status, requests, retries, errors) == (503, FAST.max_attempts, FAST.max_attempts - 1, 1)
    assert "etcd down" in str(err)


@pytest.mark.parametrize(
    "status,reason", [(400, "BadRequest"), (403, "Forbidden"), (404, "NotFound"), (422, "Invalid")]
)
def test_client_errors_are_not_retried(tmp_path, status, reason):
    async def body(fake):
        api = client(fake.url, tmp_path)
        try:
            with pytest.raises(KubeApiError) as err:
                await api.get_deployment("ns", "d")
            return err.value, len(fake.seen)
        finally:
            await api.close()

    err, requests = run(
        with_server([Answer(status, status_body(status, reason, "nope")), Answer(200, {})], body)
    )
    assert (err.status, err.reason, err.message, requests) == (status, reason, "nope", 1)
    assert err.forbidden == (status == 403) and err.not_found == (status == 404)


# -- 401: the token rotated ------------------------------------------------------------------------


def test_401_rereads_the_rotated_token_and_retries_once(tmp_path):
    async def body(fake):
        api = client(fake.url, tmp_path, token="old")
        try:
            await api.get_scale("ns", "d")  # caches "old"
            (tmp_path / "sa" / "token").write_text("new\n")  # kubelet rotates the bound token
            doc = await api.get_scale("ns", "d")
            return doc, [s.headers["Authorization"] for s in fake.seen]
        finally:
            await api.close()

    script = [Answer(200, SCALE), Answer(401, status_body(401, "Unauthorized")), Answer(200, SCALE)]
    doc, auth = run(with_server(script, body))
    assert doc == SCALE
    assert auth == ["Bearer old", "Bearer old", "Bearer new"]


def test_a_second_401_is_an_error_not_a_loop(tmp_path):
    async def body(fake):
        api = client(fake.url, tmp_path)
        try:
            with pytest.raises(KubeApiError) as err:
                await api.get_scale("ns", "d")
            return err.value, len(fake.seen)
        finally:
            await api.close()

    script = [Answer(401, status_body(401, "Unauthorized"))] * 5
    err, requests = run(with_server(script, body))
    assert (err.status, err.forbidden, requests) == (401, True, 2)


def test_token_is_reloaded_when_old_even_without_401(tmp_path):
    now = [0.0]
    f = tmp_path / "token"
    f.write_text("a")
    source = TokenSource(f, clock=lambda: now[0])
    assert source.get() == "a"
    f.write_text("b")
    assert source.get() == "a"  # cached
    now[0] = 61.0
    assert source.get() == "b"


def test_missing_token_file_is_a_clear_error(tmp_path):
    api = KubeApi("http://127.0.0.1:1", tmp_path / "absent", policy=FAST)
    with pytest.raises(KubeApiError) as err:
        run(api.get_scale("ns", "d"))
    assert err.value.status == 401 and "cannot read token" in str(err.value)


# -- the network: timeouts, dropped and refused connections ----------------------------------------


def test_a_timed_out_request_is_retried(tmp_path):
    policy = RetryPolicy(budget=30.0, max_attempts=3, base_delay=0.01, request_timeout=0.3)

    async def body(fake):
        api = client(fake.url, tmp_path, policy=policy)
        try:
            return await api.get_scale("ns", "d"), len(fake.seen), api.retries
        finally:
            await api.close()

    doc, requests, retries = run(with_server([Answer(200, SCALE, delay=2.0), Answer(200, SCALE)], body))
    assert (doc, requests, retries) == (SCALE, 2, 1)


def test_a_dropped_connection_is_retried(tmp_path):
    async def body(fake):
        api = client(fake.url, tmp_path)
        try:
            return await api.get_scale("ns", "d"), len(fake.seen)
        finally:
            await api.close()

    assert run(with_server([Answer(drop=True), Answer(drop=True), Answer(200, SCALE)], body)) == (SCALE, 3)


def test_an_unreachable_apiserver_ends_in_a_backend_error(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = client(f"http://127.0.0.1:{port}", tmp_path)

    async def go():
        try:
            with pytest.raises(KubeApiError) as err:
                await api.get_scale("ns", "d")
            return err.value
        finally:
            await api.close()

    err = run(go())
    assert err.status == 599 and "no answer" in str(err)
    assert (api.retries, api.errors) == (FAST.max_attempts - 1, 1)


def test_the_event_loop_keeps_running_while_a_call_waits(tmp_path):
    async def body(fake):
        api = client(fake.url, tmp_path)
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        try:
            await api.get_scale("ns", "d")
        finally:
            stop.set()
            await task
            await api.close()
        return ticks

    assert run(with_server([Answer(200, SCALE, delay=0.5)], body)) > 5


# -- TLS and in-cluster configuration --------------------------------------------------------------


def _tls_server(tmp_path: Path, script: list[Answer]) -> tuple[FakeApiServer, Path]:
    ca, crt, key = make_ca_and_server_cert(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)
    return FakeApiServer(script, ssl_ctx=ctx), ca


def test_in_cluster_config_uses_env_host_the_given_sa_dir_and_the_ca(tmp_path, monkeypatch):
    fake, ca = _tls_server(tmp_path, [Answer(200, SCALE)])
    sa = write_service_account(tmp_path / "pod-sa", "pod-token", namespace="team-a", ca=ca)

    async def go():
        async with fake:
            monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(fake.port))
            api, ns = KubeApi.in_cluster(str(sa), in_cluster_url())
            try:
                return api.url, ns, await api.get_scale(ns, "d"), fake.seen[0]
            finally:
                await api.close()

    url, ns, doc, seen = run(go())
    assert url == f"https://127.0.0.1:{fake.port}"
    assert (ns, doc) == ("team-a", SCALE)
    assert seen.path == "/apis/apps/v1/namespaces/team-a/deployments/d/scale"
    assert seen.headers["Authorization"] == "Bearer pod-token"


def test_service_account_dir_default_and_env(monkeypatch):
    """Resolved once, by the settings: the default is adaptive.yaml's, empty means that default too."""
    from dask_adaptive.config import resolve

    assert resolve({}).service_account_dir == "/var/run/secrets/kubernetes.io/serviceaccount"
    monkeypatch.setenv("DASK_ADAPTIVE__KUBERNETES__SERVICE_ACCOUNT_DIR", "/pods/p1/sa")
    dask.config.refresh()
    try:
        assert resolve({}).service_account_dir == "/pods/p1/sa"
    finally:
        monkeypatch.delenv("DASK_ADAPTIVE__KUBERNETES__SERVICE_ACCOUNT_DIR")
        dask.config.refresh()
    with dask.config.set({"adaptive.kubernetes.service-account-dir": ""}):
        assert resolve({}).service_account_dir == "/var/run/secrets/kubernetes.io/serviceaccount"


def test_a_server_not_signed_by_the_cluster_ca_is_refused(tmp_path):
    fake, _ = _tls_server(tmp_path, [Answer(200, SCALE)] * 5)
    other = tmp_path / "other"
    other.mkdir()
    wrong_ca, _, _ = make_ca_and_server_cert(other)

    async def go():
        async with fake:
            api = client(fake.url, tmp_path, ca=wrong_ca)
            try:
                with pytest.raises(KubeApiError) as err:
                    await api.get_scale("ns", "d")
                return err.value
            finally:
                await api.close()

    assert run(go()).status == 599


def test_in_cluster_url_without_a_host_is_none_and_brackets_ipv6(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert in_cluster_url() is None
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    assert in_cluster_url() == "https://[fd00::1]:443"


# -- the pure retry rules --------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    p = RetryPolicy(base_delay=0.1, max_delay=1.0)
    assert [backoff_delay(n, p, lambda: 0.0) for n in (1, 2, 3, 4, 5, 6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert [backoff_delay(n, p, lambda: 1.0) for n in (1, 2, 5)] == [0.1, 0.2, 1.0]


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    date = email.utils.formatdate(1_000_010, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(10.0)


def test_retry_wait_rules():
    p = RetryPolicy(budget=10.0, max_attempts=4, base_delay=0.1, max_delay=1.0)
    assert retry_wait(1, 503, None, 0.0, p, lambda: 0.0) == 0.05
    assert retry_wait(1, 599, None, 0.0, p, lambda: 0.0) == 0.05
    assert retry_wait(1, 404, None, 0.0, p) is None
    assert retry_wait(1, 401, None, 0.0, p) is None
    assert retry_wait(4, 503, None, 0.0, p) is None  # attempts used up
    assert retry_wait(1, 429, 4.0, 0.0, p) == 4.0
    assert retry_wait(1, 429, 4.0, 7.0, p) is None  # would end after the budget


def test_timeouts_and_budget_are_the_policy_given_never_dask_config(tmp_path):
    """Settings are read once, by config.resolve; the client takes what it is given."""
    with dask.config.set(
        {"adaptive.kubernetes.request-timeout": "1500ms", "adaptive.kubernetes.retry-budget": "1m"}
    ):
        assert KubeApi("http://127.0.0.1:1", tmp_path / "token").policy == RetryPolicy()
        api = KubeApi("http://127.0.0.1:1", tmp_path / "token", policy=retry_policy(1.5, 60.0))
    assert (api.policy.request_timeout, api.policy.connect_timeout, api.policy.budget) == (1.5, 1.5, 60.0)
