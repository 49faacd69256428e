"""The I/O of the worker-pod cache: list once, then watch from the list's resourceVersion.

A look of the backend reads `PodCache.pods()`: memory, no request, no parse. What changes the state is
podcache.apply_event (pure); this module only moves bytes and decides when to start over:
- a (re)list is chunked (`limit` pods per page) and each page parsed on its own, so no single step
  holds the event loop for a full list's parse;
- the watch asks for bookmarks; its lines are parsed in slices of at most `slice_seconds`, yielding to
  the loop between slices, so a burst of a thousand events never blocks it in one piece;
- 410 Gone (an HTTP 410, or an ERROR event with code 410) relists at once; a watch the server ended
  cleanly resumes from the last version; a broken stream or any other error relists after a backoff
  (exponential with jitter, capped), logged each time. While a relist is due, the cache is not synced
  and a look waits for it (bounded), then fails like a failed list did: nothing is decided blind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from dask_adaptive.backends.kubernetes.api import (
    TRANSPORT_ERROR,
    KubeApi,
    KubeApiError,
    RetryPolicy,
    backoff_delay,
)
from dask_adaptive.backends.kubernetes.podcache import GONE, Applied, CacheState, Pod, apply_event, from_list

logger = logging.getLogger(__name__)

RELIST_BACKOFF = RetryPolicy(base_delay=0.5, max_delay=30.0)


class PodCache:
    """The pods matching `selector` in `namespace`, kept current by a watch (module docstring).

    `version` grows by one on every change of the pods, so a reader can reuse what it derived from the
    previous version. Counters for logs and the benchmark: relists, watches, events, failures.
    """

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        selector: str,
        *,
        page_size: int = 20,
        watch_seconds: tuple[int, int] = (300, 600),
        slice_seconds: float = 0.002,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.api, self.namespace, self.selector = api, namespace, selector
        self.page_size = page_size
        self.watch_seconds = watch_seconds
        self.slice_seconds = slice_seconds
        self._rand = rand
        self.state = CacheState()
        self.version = 0
        self.relists = self.watches = self.events = self.failures = 0
        self.last_error = ""
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- reading -------------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def pods(self, timeout: float) -> Mapping[str, Pod]:
        """The pods by name; waits up to `timeout` for a due relist, then raises KubeApiError."""
        if not self._synced.is_set():
            try:
                await asyncio.wait_for(self._synced.wait(), timeout)
            except TimeoutError:
                raise KubeApiError(
                    "WATCH", self._path, TRANSPORT_ERROR, "NotSynced", self.last_error or "relist pending"
                ) from None
        return self.state.pods

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """The first list, then the watch in the background. The list's errors are raised here."""
        await self._relist()
        self._task = asyncio.create_task(self._run(), name="dask-adaptive-pod-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._synced.clear()

    @property
    def _path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods"

    # -- the loop ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures, relist = 0, False  # failures: in a row, reset by a watch that delivered events
        while True:
            events, began = self.events, time.monotonic()
            try:
                if relist:
                    await self._relist()
                    relist = False
                status, body = await self._watch()
            except KubeApiError as e:
                status, body = e.status, str(e).encode()
            except Exception as e:  # a bug must not end the watch for good: relist and log it
                logger.exception("pod watch: unexpected error")
                status, body = TRANSPORT_ERROR, repr(e).encode()
            lasted = time.monotonic() - began >= 1.0
            if self.events != events or (status == 200 and lasted):
                failures = 0
            if status == 200:  # the server ended the watch: resume from the last version
                if not lasted and self.events == events:  # at once and empty: never spin on the API
                    failures += 1
                    await asyncio.sleep(backoff_delay(min(failures, 10), RELIST_BACKOFF, self._rand))
                continue
            self._synced.clear()
            relist = True
            failures += 1
            if status == GONE:
                self.last_error = self.last_error if self.last_error.startswith("410") else "410 Gone"
                logger.warning("pod watch: %s; relisting", self.last_error)
                if failures == 1:  # the usual case: the version aged out; a fresh list fixes it at once
                    continue
            else:
                self.failures += 1
                self.last_error = f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"
            wait = backoff_delay(min(failures, 10), RELIST_BACKOFF, self._rand)
            logger.warning("pod watch failed (%s); relisting in %.1fs", self.last_error, wait)
            await asyncio.sleep(wait)

    async def _relist(self) -> None:
        """A chunked list, one page parsed at a time; replaces the state (and clears the tombstones)."""
        items: list[Pod] = []
        token, rv = "", ""
        while True:
            page = json.loads(
                await self.api.list_pods_page(self.namespace, self.selector, self.page_size, token)
            )
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
            token, rv = str(meta.get("continue") or ""), str(meta.get("resourceVersion") or rv)
            if not token:
                break
            await asyncio.sleep(0)  # let the loop run between pages
        self.state = from_list(items, rv)
        self.version += 1
        self.relists += 1
        self._synced.set()
        logger.info("pod watch: listed %d pods at resourceVersion %s", len(items), rv)

    async def _watch(self) -> tuple[int, bytes]:
        """One watch; applies its events as they come. Returns (status, error body); 410 for an
        ERROR event that says the version is gone."""
        lines: deque[bytes] = deque()
        tail = bytearray()
        arrived = asyncio.Event()

        def on_chunk(chunk: bytes) -> None:  # on the loop, as tornado reads: split only, no parse
            tail.extend(chunk)
            if b"\n" in chunk:
                *complete, rest = bytes(tail).split(b"\n")
                lines.extend(line for line in complete if line.strip())
                tail[:] = rest
                arrived.set()

        low, high = self.watch_seconds
        seconds = int(low + (high - low) * self._rand())
        self.watches += 1
        stream = asyncio.ensure_future(
            self.api.watch_pods(self.namespace, self.selector, self.state.resource_version, seconds, on_chunk)
        )
        try:
            while True:
                if not lines:
                    if stream.done():
                        break
                    arrived.clear()
                    waiter = asyncio.ensure_future(arrived.wait())
                    await asyncio.wait({stream, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    continue
                if (applied := self._apply_slice(lines)) is not None:
                    return (GONE, b"") if applied.gone else (TRANSPORT_ERROR, applied.reason.encode())
                await asyncio.sleep(0)
            return stream.result()
        finally:
            if not stream.done():
                # not cancelled: tornado would log the connection's later end as an error; the stream
                # ends with the server's timeout or the client's close, its result unread
                stream.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _apply_slice(self, lines: deque[bytes]) -> Applied | None:
        """Parse and apply lines for at most `slice_seconds`; the event that asks for a relist, if any."""
        deadline = time.perf_counter() + self.slice_seconds
        while lines:
            event: dict[str, Any] = json.loads(lines.popleft())
            if event.get("kind") == "Status":  # a bare Status instead of an event
                event = {"type": "ERROR", "object": event}
            applied = apply_event(self.state, event)
            self.state = applied.state
            if applied.changed:
                self.version += 1
            if applied.relist:
                self.last_error = applied.reason
                return applied
            self.events += 1
            if time.perf_counter() >= deadline:
                break
        return None
