"""The worker pods as a list-then-watch cache keeps them: the pure rules for applying watch events.

Why a cache: listing every worker pod on each look costs a full LIST (megabytes at 1000 pods) and a
JSON parse of all of it on the scheduler's event loop. A watch delivers only what changed, so a look
reads memory. The I/O (list, watch, reconnect) is in watch.py; here is only what an event does to the
state, so every sequence (out-of-order versions, bookmark-only streams, 410 Gone) is a plain test.

Rules:
- ADDED / MODIFIED put the pod, unless its resourceVersion is older than the copy held, or not newer
  than the version at which that name was DELETED (a late event must not bring a deleted pod back).
- DELETED removes the pod and remembers the name's deletion version (a tombstone), even if the event
  comes out of order: once deleted, a pod is never shown again until a newer version of it arrives.
- BOOKMARK only moves the version the next watch resumes from.
- ERROR (410 Gone: the version is too old; anything else: the stream is unusable) asks for a relist.
resourceVersions are compared as integers when both are (etcd revisions are); an opaque one is taken
in stream order, as Kubernetes' own contract says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

Pod = Mapping[str, Any]
GONE = 410
MAX_TOMBSTONES = 10_000  # oldest dropped first; a relist clears them all


@dataclass(frozen=True)
class CacheState:
    """The pods by name, the version a watch resumes from, and the tombstones of deleted names."""

    pods: Mapping[str, Pod] = field(default_factory=lambda: MappingProxyType({}))
    resource_version: str = ""
    tombstones: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Applied:
    """The state after one event; `changed`: the pods differ; `relist`: the watch must start over
    from a fresh list (`reason` says why, for the log)."""

    state: CacheState
    changed: bool = False
    relist: bool = False
    reason: str = ""
    gone: bool = False  # the relist is for 410 Gone: due at once, no backoff


def version_int(rv: str) -> int | None:
    try:
        return int(rv)
    except (TypeError, ValueError):
        return None


def older(a: str, b: str) -> bool:
    """Whether resourceVersion `a` is known to be older than `b` (False when either is opaque)."""
    x, y = version_int(a), version_int(b)
    return x is not None and y is not None and x < y


def newest(a: str, b: str) -> str:
    """The later of two versions; `b` (the arriving one) when they cannot be compared."""
    return a if older(b, a) else b


def pod_version(pod: Pod) -> str:
    return str((pod.get("metadata") or {}).get("resourceVersion") or "")


def from_list(items: list[Pod], resource_version: str) -> CacheState:
    """The state a (re)list gives: exactly its pods, no tombstones, its version to watch from."""
    pods = {str((p.get("metadata") or {}).get("name") or ""): p for p in items}
    pods.pop("", None)
    return CacheState(MappingProxyType(pods), resource_version, MappingProxyType({}))


def apply_event(state: CacheState, event: Mapping[str, Any]) -> Applied:
    """One watch event applied to `state` (module docstring); never mutates `state`."""
    kind = event.get("type")
    obj = event.get("object") or {}
    if kind == "ERROR":
        code = obj.get("code")
        reason = "410 Gone" if code == GONE else f"error event {code} {obj.get('reason', '')}".rstrip()
        message = f"{reason}: {obj.get('message', '')}".rstrip(": ")
        return Applied(state, relist=True, reason=message, gone=code == GONE)
    rv = pod_version(obj)
    if kind == "BOOKMARK":
        if not rv:
            return Applied(state)
        return Applied(CacheState(state.pods, newest(state.resource_version, rv), state.tombstones))
    if kind not in ("ADDED", "MODIFIED", "DELETED"):
        return Applied(state, relist=True, reason=f"unknown event type {kind!r}")
    name = str((obj.get("metadata") or {}).get("name") or "")
    if not name:
        return Applied(state, relist=True, reason=f"{kind} event without a pod name")
    resume = newest(state.resource_version, rv) if rv else state.resource_version
    pods, tombstones = dict(state.pods), dict(state.tombstones)
    held = pods.get(name)
    if kind == "DELETED":
        changed = pods.pop(name, None) is not None
        tombstones.pop(name, None)
        tombstones[name] = rv
        while len(tombstones) > MAX_TOMBSTONES:
            del tombstones[next(iter(tombstones))]
        return Applied(CacheState(MappingProxyType(pods), resume, MappingProxyType(tombstones)), changed)
    deleted_at = tombstones.get(name)
    stale = (held is not None and older(rv, pod_version(held))) or (
        deleted_at is not None and (not older(deleted_at, rv))
    )
    if stale:  # an older copy, or the pod as it was before its deletion: keep what we have
        return Applied(CacheState(state.pods, resume, state.tombstones))
    tombstones.pop(name, None)
    pods[name] = obj
    return Applied(CacheState(MappingProxyType(pods), resume, MappingProxyType(tombstones)), True)
