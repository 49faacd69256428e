"""The `kubernetes` backend: scale ONE worker Deployment, and make exactly the retired pods go.

The ReplicaSet picks which pods die when `spec.replicas` drops (its ranking: ranking.py), so for a
data-safe scale-down (`remove`) we:
  a. set a very low deletion cost on each named pod (for clusters that honour it);
  b. wait, bounded, until the named pods are NotReady (retired workers answer 503 to the readiness probe)
     and no other pod would outrank them; if that does not happen, delete the named pods directly first
     (they are retired, so this is safe) and let the scale-down take their fresh replacements;
  c. lower /scale ONCE by len(names), re-reading it right before the write;
  d. verify which pods went; if the ReplicaSet took a pod that was not named, delete the named ones
     directly and report `wrong` / `corrected`.
Decisions are pure functions in ranking.py; this class only performs the I/O (through api.py).
Tunables (dask config `adaptive.kubernetes.*`, defaults and meanings in adaptive.yaml / CONFIG.md):
not-ready-timeout (how long (b) waits; keep it above the worker readinessProbe's periodSeconds x
failureThreshold), settle-timeout (how long (d) waits for the ReplicaSet), poll-interval, and the REST
client's request-timeout and retry-budget (a RetryPolicy). The preload validates them once (config.py) and
passes them in; nothing here reads dask config.
An API outage raises `BackendError` before any change is made, so nothing is done blind; failures after
the single /scale write are logged (not raised) so the controller never repeats the write.

A removal waits (b, d) for up to a minute; scale_up() must not wait behind it, so only the short
read-modify-writes of /scale are serialised (one lock), never the waits. Each named unit has a record in
the departures record the executor lends (`departures`, backends/departures.py): REMOVING until (c) is
written, then LOWERED, moved in the same step as the write and under the same lock, where observe()
reads the count last. scale_up's `n` counts the units of unfinished removals (Backend.scale_up): it
takes their records at the call and discounts those that reached LOWERED by its own write, even if their
removal has returned meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dask_adaptive.backends.base import BackendError, BackendUnavailable, Observation, RemovalReport, Unit
from dask_adaptive.backends.departures import IN_REMOVAL, Departures, Reason, Stage
from dask_adaptive.backends.kubernetes.api import (
    FIELD_MANAGER,
    KubeApi,
    KubeApiError,
    RetryPolicy,
    in_cluster_url,
)
from dask_adaptive.backends.kubernetes.ranking import (
    DELETION_COST,
    LOWEST_COST,
    RemovalPlan,
    build_event,
    owned_by,
    plan_removal,
    pod_name,
    pod_ready,
    pod_terminating,
    required_permissions,
    selector_matches,
    units_in_deletion_order,
    verify_removal,
)
from dask_adaptive.backends.kubernetes.watch import PodCache

logger = logging.getLogger(__name__)


# -- the backend -------------------------------------------------------------------------------------


@dataclass
class Counters:
    """Plain ints for the metrics module (`backend.counters.wrong_picks`, `backend.api_errors`)."""

    removals: int = 0
    wrong_picks: int = 0  # unnamed pods the ReplicaSet removed
    corrections: int = 0  # named pods deleted directly after a wrong pick or a stuck ReplicaSet
    direct_deletes: int = 0  # named pods deleted before /scale because the ranking was not safe
    event_errors: int = 0


class KubernetesBackend:
    """Scales one worker Deployment through `/scale` and removes exactly the named pods (see module doc)."""

    def __init__(
        self,
        namespace: str | None,
        deployment: str,
        selector: str,
        service_account_dir: str | None = None,
        api_url: str | None = None,
        field_manager: str = FIELD_MANAGER,
        *,
        not_ready_timeout: float,
        settle_timeout: float,
        poll_interval: float,
        retry_policy: RetryPolicy | None = None,
        event_timeout: float = 5.0,
        api: KubeApi | None = None,
        watch: bool = True,
    ) -> None:
        """Validated values only (config.resolve); `api` replaces the in-cluster client (tests);
        `watch=False` lists the pods on every look instead of keeping a watch cache (the baseline)."""
        self.namespace = namespace or ""
        self.deployment = deployment
        self.selector = selector
        self.service_account_dir = service_account_dir
        self.api_url = api_url
        self.field_manager = field_manager
        # The readiness probe must fail `failureThreshold` times `periodSeconds` apart before a retired
        # pod turns NotReady: 30 s with Kubernetes' default probe settings.
        self.not_ready_timeout = not_ready_timeout
        self.settle_timeout = settle_timeout
        self.poll_interval = poll_interval
        self.retry_policy = retry_policy or RetryPolicy()
        self.event_timeout = event_timeout
        self.api = api
        self.watch = watch
        self.cache: PodCache | None = None
        self._looked: tuple[int, list[dict[str, Any]], tuple[Unit, ...] | None] = (-1, [], None)
        self.counters = Counters()
        self._deployment_doc: dict[str, Any] = {"metadata": {"name": deployment}}
        self._seen_ready: set[str] = set()
        self._strangers: list[str] = []  # pods the selector matched that the Deployment does not own
        self._scale_lock = asyncio.Lock()  # held for one read + write of /scale, never for a wait
        # the units leaving: lent by the executor that drives this backend (module docstring)
        self.departures = Departures()
        self._raised = 0  # replicas added by scale_up() so far: a removal's verify follows its target
        self._instance = os.environ.get("HOSTNAME") or socket.gethostname()

    @property
    def api_errors(self) -> int:
        return self.api.errors if self.api is not None else 0

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Fail fast, with one line, if the API, the Deployment or a permission is missing."""
        if self.api is None:
            if not self.service_account_dir:
                raise BackendUnavailable("no service-account folder given")
            sa_dir = Path(self.service_account_dir)
            if not (sa_dir / "token").exists():
                raise BackendUnavailable(
                    f"no service-account token at {sa_dir / 'token'} (not in a pod, or no token mounted)"
                )
            url = self.api_url or in_cluster_url()
            if not url:
                raise BackendUnavailable("KUBERNETES_SERVICE_HOST is not set and no API URL was given")
            self.api, own_namespace = KubeApi.in_cluster(
                str(sa_dir), url, field_manager=self.field_manager, policy=self.retry_policy
            )
            self.namespace = self.namespace or own_namespace or ""
        if not self.namespace:
            raise BackendUnavailable("no namespace given and the service account has none")
        try:
            denied = []
            for verb, group, resource, sub, name in required_permissions(self.deployment):
                allowed, _ = await self.api.can_i(self.namespace, verb, group, resource, sub, name)
                if not allowed:
                    what = f"{resource}/{sub}" if sub else resource
                    denied.append(f"{verb} {what}{' ' + name if name else ''}")
            if denied:
                raise BackendUnavailable(
                    f"RBAC: this service account may not {'; '.join(denied)} in namespace {self.namespace}"
                )
            self._deployment_doc = await self.api.get_deployment(self.namespace, self.deployment)
            if self.watch:
                self.cache = PodCache(self.api, self.namespace, self.selector)
                await self.cache.start()
        except KubeApiError as e:
            if e.not_found:
                raise BackendUnavailable(f"Deployment {self.namespace}/{self.deployment} not found") from None
            if e.forbidden:
                raise BackendUnavailable(f"Kubernetes API refused us: {e}") from None
            raise BackendUnavailable(f"Kubernetes API at {self.api.url} unusable: {e}") from None
        labels = (
            self._deployment_doc.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}
        )
        try:
            matches = selector_matches(self.selector, labels)
        except ValueError as e:
            raise BackendUnavailable(f"selector {self.selector!r}: {e}") from None
        if not matches:
            raise BackendUnavailable(
                f"selector {self.selector!r} does not match the pod template labels {labels} of "
                f"Deployment {self.namespace}/{self.deployment}"
            )
        logger.info(
            "kubernetes backend ready: Deployment %s/%s, selector %s, API %s",
            self.namespace,
            self.deployment,
            self.selector,
            self.api.url,
        )

    async def close(self) -> None:
        """Leave the pods as they are (the Deployment outlives the scheduler); drop the connections."""
        if self.cache is not None:
            await self.cache.close()
        if self.api is not None:
            await self.api.close()

    def _require_api(self) -> KubeApi:
        if self.api is None:
            raise BackendError("kubernetes backend used before start()")
        return self.api

    # -- observe / scale up ----------------------------------------------------------------------

    async def list_pods(self) -> list[dict[str, Any]]:
        """The worker pods now, remembering which were ever Ready (a retired worker's readiness drops).

        Only pods the Deployment owns (ranking.owned_by): headroom placeholders share the namespace and
        the stack's labels, and would otherwise count as units and, Pending after a preemption, outrank
        the retired pods of every removal.
        With the watch cache, a look whose pods have not changed since the last one reuses its work."""
        if self.cache is not None:
            listed_by_name = await self.cache.pods(self.retry_policy.request_timeout)
            version = self.cache.version
            if version == self._looked[0]:
                return list(self._looked[1])
            listed = list(listed_by_name.values())
        else:
            version = -1
            listed = await self._require_api().list_pods(self.namespace, self.selector)
        pods = [p for p in listed if owned_by(p, self.deployment)]
        strangers = sorted(pod_name(p) for p in listed if not owned_by(p, self.deployment))
        if strangers and strangers != self._strangers:
            logger.warning(
                "kubernetes backend: ignoring pods matching %s that Deployment %s does not own: %s",
                self.selector,
                self.deployment,
                ",".join(strangers),
            )
        self._strangers = strangers
        names = {pod_name(p) for p in pods}
        self._seen_ready = {n for n in self._seen_ready if n in names}
        self._seen_ready |= {pod_name(p) for p in pods if pod_ready(p) and not pod_terminating(p)}
        self._looked = (version, pods, None)
        return list(pods)

    async def _requested(self) -> int:
        scale = await self._require_api().get_scale(self.namespace, self.deployment)
        return int(scale.get("spec", {}).get("replicas") or 0)

    async def observe(self) -> Observation:
        pods = await self.list_pods()
        version, cached, units = self._looked
        if units is None or version < 0:
            units = units_in_deletion_order(pods, self._seen_ready)
            self._looked = (version, cached, units)
        # the count last, under the lock of the decrements' writes (Backend.observe): the records the
        # caller reads next, without an await, are LOWERED exactly for the decrements it reflects
        async with self._scale_lock:
            requested = await self._requested()
        return Observation(requested=requested, units=units)

    async def scale_up(self, n: int) -> None:
        """Raise spec.replicas to n, minus the units counted in n whose removal's decrement landed.

        Never lowers it (a stale n must not shrink the Deployment).
        """
        # taken before any await: exactly the units the caller's n counts; their records stay readable
        # (LOWERED, then GONE) after their removal returns
        counted = [d for d in self.departures if d.stage in IN_REMOVAL]
        async with self._scale_lock:
            landed = sorted(d.name for d in counted if d.stage in (Stage.LOWERED, Stage.GONE))
            n -= len(landed)
            current = await self._requested()
            if n <= current:
                logger.info("scale_up(%d) ignored: Deployment already asks for %d", n, current)
                return
            await self._require_api().patch_scale(self.namespace, self.deployment, n)
            self._raised += n - current
        logger.info(
            "scaled Deployment %s/%s up: %d -> %d%s",
            self.namespace,
            self.deployment,
            current,
            n,
            f" (not counting {landed}, removed meanwhile)" if landed else "",
        )

    # -- data-safe removal -----------------------------------------------------------------------

    async def remove(self, names: list[str]) -> RemovalReport:
        """The data-safe removal of the module docstring; lowers /scale once by the named pods present.

        A named pod that is already gone or terminating is reported removed and NOT counted in the
        decrement (deviation from "by len(names)" on purpose: its slot may already hold a replacement,
        and lowering for it would let the ReplicaSet take an unnamed, possibly data-holding pod).
        """
        names = list(dict.fromkeys(names))
        if not names:
            return RemovalReport(removed=())
        # before any await: a scale_up() from now on counts them in n. The executor's units have their
        # REMOVING records already and it ends them; a caller without records gets them for this call
        own = self.departures.begin(names, Stage.REMOVING, Reason.REMOVE)
        try:
            return await self._remove(names)
        finally:
            # a scale_up holding one of them still reads its last stage: LOWERED is discounted
            self.departures.forget(d.name for d in own)

    async def _remove(self, names: list[str]) -> RemovalReport:
        api = self._require_api()
        plan = plan_removal(await self.list_pods(), names)

        # (a) mark: honoured by 1.22+ ReplicaSets; harmless elsewhere.
        for name in plan.present:
            try:
                await api.annotate_pod(self.namespace, name, {DELETION_COST: LOWEST_COST})
            except KubeApiError as e:
                if not e.not_found:
                    raise
        # (b) wait until the retired pods are NotReady and nothing else would be picked first.
        pods, plan = await self.wait_until_safe(names)
        if not plan.safe:
            logger.warning(
                "removal of %s not safe for the ReplicaSet's ranking (still Ready: %s; other pods ranked "
                "first: %s): deleting the named pods directly before lowering /scale",
                names,
                list(plan.still_ready),
                list(plan.outranking),
            )
            for name in plan.present:
                await api.delete_pod(self.namespace, name)
                self.counters.direct_deletes += 1
        before = [pod_name(p) for p in pods if not pod_terminating(p)]
        if plan.missing:
            # Gone already (evicted, deleted by hand): their slots may hold fresh replacements by now.
            # Lowering /scale for them too would make the ReplicaSet pick a pod we did not name.
            logger.info(
                "%s already gone; /scale is lowered only for the %d named pods still there",
                list(plan.missing),
                len(plan.present),
            )
        if not plan.present:
            # nothing to lower: their slots are no longer ours to discount
            self.departures.transition(names, Stage.LOWERED)
            return RemovalReport(removed=tuple(names))

        # (c) one write, to the count as it is now (a scale_up may have raised it during the wait).
        # From here on nothing is raised: the controller must never repeat it.
        async with self._scale_lock:
            requested = await self._requested()
            target = max(0, requested - len(plan.present))
            await api.patch_scale(self.namespace, self.deployment, target)
            self.departures.transition(names, Stage.LOWERED)
            raised_before = self._raised
        self.counters.removals += 1
        logger.info(
            "scaled Deployment %s/%s down: %d -> %d to remove %s",
            self.namespace,
            self.deployment,
            requested,
            target,
            names,
        )
        try:
            return await self._verify(before, names, lambda: target + self._raised - raised_before)
        except BackendError as e:
            logger.warning(
                "could not verify the removal of %s (%s); the controller's reconciliation "
                "will catch any survivor",
                names,
                e,
            )
            return RemovalReport(removed=tuple(names))

    async def wait_until_safe(self, names: list[str]) -> tuple[list[dict[str, Any]], RemovalPlan]:
        """Step (b): wait (bounded) until the named pods rank first for the ReplicaSet. A seam: the
        end-to-end tests replace it to let the real ReplicaSet pick, proving the correction step."""
        deadline = time.monotonic() + self.not_ready_timeout
        while True:
            pods = await self.list_pods()
            plan = plan_removal(pods, names)
            if plan.safe or not plan.waitable or time.monotonic() >= deadline:
                return pods, plan
            await asyncio.sleep(self.poll_interval)

    async def _verify(self, before: list[str], names: list[str], target: Callable[[], int]) -> RemovalReport:
        """(d) Wait until the ReplicaSet acted, then delete any named pod still there.

        `target()` follows scale-ups made meanwhile. A named pod that survives a settled ReplicaSet was
        not picked at all (a wrong pick, or a scale-up that cancelled our decrement before the ReplicaSet
        acted on it): it is retired, so it is deleted directly rather than left as a useless unit.
        """
        deadline = time.monotonic() + self.settle_timeout
        while True:
            check = verify_removal(before, await self.list_pods(), names, target())
            if check.settled or time.monotonic() >= deadline:
                break
            await asyncio.sleep(self.poll_interval)
        corrected: list[str] = []
        if check.survivors:
            for name in check.survivors:
                await self._require_api().delete_pod(self.namespace, name)
                corrected.append(name)
            self.counters.corrections += len(corrected)
        if check.wrong:
            self.counters.wrong_picks += len(check.wrong)
            message = (
                f"ReplicaSet removed {list(check.wrong)} instead of {list(check.survivors)}; "
                f"deleted {corrected} directly"
            )
            logger.warning("%s", message)
            await self.record("WrongPodRemoved", message)
        elif corrected:
            logger.warning(
                "ReplicaSet did not remove %s (%s); deleted them directly",
                corrected,
                "settled without them" if check.settled else f"not settled in {self.settle_timeout:.0f}s",
            )
        return RemovalReport(
            removed=tuple(check.removed) + tuple(corrected), wrong=check.wrong, corrected=tuple(corrected)
        )

    # -- events ----------------------------------------------------------------------------------

    async def record(self, reason: str, message: str) -> None:
        """A Kubernetes Event on the Deployment; best effort and short, never raised."""
        if self.api is None:
            return
        event = build_event(
            self.namespace, self._deployment_doc, reason, message, datetime.now(UTC), self._instance
        )
        try:
            await asyncio.wait_for(self.api.create_event(self.namespace, event), self.event_timeout)
        except (BackendError, TimeoutError) as e:
            self.counters.event_errors += 1
            logger.info("could not record event %s: %s", reason, e)
