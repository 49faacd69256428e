"""The worker-pod watch cache: the pure event rules (tables of event sequences), and the I/O loop
against a local list+watch server (testbed/kube/pod_api.py) serving pods from the program's template."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from dask_adaptive.backends.kubernetes.api import KubeApi
from dask_adaptive.backends.kubernetes.podcache import CacheState, apply_event, from_list
from dask_adaptive.backends.kubernetes.watch import PodCache
from testbed.kube import pod_api


def pod(name: str, rv: int | str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": str(rv)},
        "status": {"conditions": [{"type": "Ready", "status": str(ready)}]},
    }


def ev(kind: str, name: str = "", rv: int | str = "", **kw: Any) -> dict[str, Any]:
    if kind == "BOOKMARK":
        return {"type": kind, "object": {"metadata": {"resourceVersion": str(rv)}}}
    if kind == "ERROR":
        return {"type": kind, "object": {"kind": "Status", "code": kw.get("code", 410), "message": "too old"}}
    return {"type": kind, "object": pod(name, rv, kw.get("ready", True))}


def run(state: CacheState, events: list[dict[str, Any]]) -> tuple[CacheState, list[bool], list[bool]]:
    changed, relist = [], []
    for e in events:
        applied = apply_event(state, e)
        state = applied.state
        changed.append(applied.changed)
        relist.append(applied.relist)
    return state, changed, relist


START = from_list([pod("a", 10), pod("b", 11)], "11")

# (events, pods present after, resume version, which events changed the pods, which asked for a relist)
CASES = {
    "add, modify, delete in order": (
        [ev("ADDED", "c", 12), ev("MODIFIED", "a", 13), ev("DELETED", "b", 14)],
        {"a": "13", "c": "12"}, "14", [True, True, True], [False] * 3,
    ),
    "a stale MODIFIED (older than held) is ignored": (
        [ev("MODIFIED", "a", 15), ev("MODIFIED", "a", 12)],
        {"a": "15", "b": "11"}, "15", [True, False], [False, False],
    ),
    "a late MODIFIED after the DELETED does not bring the pod back": (
        [ev("DELETED", "a", 20), ev("MODIFIED", "a", 19), ev("ADDED", "a", 20)],
        {"b": "11"}, "20", [True, False, False], [False] * 3,
    ),
    "a DELETED that arrives before an older MODIFIED still wins": (
        [ev("DELETED", "b", 30), ev("MODIFIED", "b", 25)],
        {"a": "10"}, "30", [True, False], [False, False],
    ),
    "a pod re-created under the same name after its deletion shows": (
        [ev("DELETED", "a", 20), ev("ADDED", "a", 21)],
        {"a": "21", "b": "11"}, "21", [True, True], [False, False],
    ),
    "DELETED of a pod never seen changes nothing but blocks its older copies": (
        [ev("DELETED", "z", 40), ev("ADDED", "z", 39)],
        {"a": "10", "b": "11"}, "40", [False, False], [False, False],
    ),
    "bookmark-only stream moves the version only": (
        [ev("BOOKMARK", rv=50), ev("BOOKMARK", rv=60)],
        {"a": "10", "b": "11"}, "60", [False, False], [False, False],
    ),
    "an out-of-order bookmark never moves the version back": (
        [ev("BOOKMARK", rv=60), ev("BOOKMARK", rv=55)],
        {"a": "10", "b": "11"}, "60", [False, False], [False, False],
    ),
    "410 Gone as an ERROR event asks for a relist and keeps the state": (
        [ev("ADDED", "c", 12), ev("ERROR", code=410)],
        {"a": "10", "b": "11", "c": "12"}, "12", [True, False], [False, True],
    ),
    "another ERROR asks for a relist too": (
        [ev("ERROR", code=500)],
        {"a": "10", "b": "11"}, "11", [False], [True],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_event_sequences(case):
    events, present, resume, changed, relist = CASES[case]
    state, got_changed, got_relist = run(START, events)
    assert {n: p["metadata"]["resourceVersion"] for n, p in state.pods.items()} == present
    assert state.resource_version == resume
    assert (got_changed, got_relist) == (changed, relist)


def test_apply_event_never_mutates_its_input_and_410_is_marked_gone():
    before = dict(START.pods)
    apply_event(START, ev("DELETED", "a", 12))
    apply_event(START, ev("ADDED", "c", 12))
    assert dict(START.pods) == before and not START.tombstones
    assert apply_event(START, ev("ERROR", code=410)).gone
    assert not apply_event(START, ev("ERROR", code=500)).gone


def test_a_relist_replaces_everything_and_clears_tombstones():
    state, *_ = run(START, [ev("DELETED", "a", 12)])
    fresh = from_list([pod("a", 13)], "13")  # `a` re-listed: the list is the truth
    assert set(fresh.pods) == {"a"} and not fresh.tombstones and fresh.resource_version == "13"
    assert "a" in state.tombstones


def test_opaque_versions_are_taken_in_stream_order():
    state = from_list([pod("a", "x1")], "x1")
    state, changed, _ = run(state, [ev("MODIFIED", "a", "x0"), ev("BOOKMARK", rv="y")])
    assert state.pods["a"]["metadata"]["resourceVersion"] == "x0" and changed == [True, False]
    assert state.resource_version == "y"


# -- the I/O loop against a local list + watch server ------------------------------------------------


@pytest.fixture
def served(tmp_path):
    deployment = {
        "metadata": {"name": "dask-worker", "namespace": "work"},
        "spec": {"template": {"metadata": {"labels": {"app": "w"}},
                              "spec": {"containers": [{"name": "worker", "image": "img"}]}}},
    }  # fmt: skip
    pod_api.Handler.api = pod_api.PodApi(deployment, 120, bookmark_seconds=0.3)
    server = ThreadingHTTPServer(("127.0.0.1", 0), pod_api.Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("t")
    yield f"http://127.0.0.1:{server.server_address[1]}", token, pod_api.Handler.api
    server.shutdown()


def test_cache_lists_in_pages_follows_changes_and_bookmarks(served):
    url, token, state = served

    async def scenario():
        api = KubeApi(url, token)
        cache = PodCache(api, "work", "app=w", page_size=25)
        await cache.start()
        listed = dict(await cache.pods(5))
        first_rv = cache.state.resource_version
        await asyncio.to_thread(state.modify, 3)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if cache.events >= 3 and cache.state.resource_version == str(state.rv) != first_rv:
                break
        await asyncio.sleep(0.5)  # a bookmark or two
        pods = dict(await cache.pods(5))
        await cache.close()
        await api.close()
        return cache, listed, pods

    cache, listed, pods = asyncio.run(scenario())
    assert len(listed) == 120 and cache.relists == 1  # one list of 5 pages, no relist after it
    truth = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in state.pods}
    assert {n: p["metadata"]["resourceVersion"] for n, p in pods.items()} == truth
    assert cache.state.resource_version == str(state.rv)


def test_a_look_waits_for_a_due_relist_then_fails_cleanly(tmp_path):
    token = tmp_path / "token"
    token.write_text("t")

    async def scenario():
        cache = PodCache(KubeApi("http://127.0.0.1:9", token), "work", "app=w")
        return await cache.pods(0.05)

    with pytest.raises(Exception, match="NotSynced"):
        asyncio.run(scenario())


def test_pods_served_are_the_templates_pods_with_apiserver_defaults():
    dep = {"metadata": {"name": "dw", "namespace": "n"},
           "spec": {"template": {"metadata": {"labels": {"app": "w"}},
                                 "spec": {"containers": [{"name": "worker", "image": "img"}]}}}}  # fmt: skip
    p = pod_api.realistic_pod(dep, 7, 1234)
    assert p["metadata"]["labels"] == {"app": "w", "pod-template-hash": "5d8c7b9f4"}
    assert p["metadata"]["ownerReferences"][0]["name"] == "dw-5d8c7b9f4" and p["spec"]["nodeName"]
    assert p["status"]["phase"] == "Running" and json.dumps(p)


class StubApi:
    """list_pods_page / watch_pods answering from a script: each watch gets the next (status, lines)."""

    def __init__(self, watches: list[tuple[int, list[dict[str, Any]]]]) -> None:
        self.watches, self.lists, self.watched = list(watches), 0, 0

    async def list_pods_page(self, namespace, selector, limit, continue_token=""):
        self.lists += 1
        return json.dumps({"metadata": {"resourceVersion": "5"}, "items": [pod("a", 5)]}).encode()

    async def watch_pods(self, namespace, selector, resource_version, timeout_seconds, on_chunk):
        self.watched += 1
        status, events = self.watches.pop(0) if self.watches else (200, [])
        for e in events:
            on_chunk(json.dumps(e).encode() + b"\n")
        return status, b""


def test_410_relists_at_once_and_an_empty_watch_ended_at_once_backs_off():
    api = StubApi([(200, [ev("ADDED", "b", 6), ev("ERROR", code=410)]), (410, [])])

    async def scenario():
        cache = PodCache(api, "work", "app=w", rand=lambda: 0.0)  # type: ignore[arg-type]
        await cache.start()
        await asyncio.sleep(1.0)
        await cache.close()
        return cache

    cache = asyncio.run(scenario())
    # the ERROR event relists at once, the HTTP 410 that follows it too (a second 410 in a row waits);
    # then every watch ends at once with nothing: those back off instead of spinning on the API
    assert api.lists == 3 and cache.relists == 3 and set(cache.state.pods) == {"a"}
    assert 2 <= api.watched <= 6, api.watched
