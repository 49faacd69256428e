"""Pure decisions of the `kubernetes` backend: how a ReplicaSet ranks pods, and what a removal did.

A Deployment's ReplicaSet, not us, picks which pods die when `spec.replicas` drops. Its ranking (Kubernetes
`ActivePodsWithRanks`) deletes unscheduled before scheduled, Pending before Running, NotReady before
Ready, and only then looks at `controller.kubernetes.io/pod-deletion-cost` (honoured from 1.22).
`plan_removal` checks that ranking against our wish before /scale is lowered; `verify_removal` compares
the pods before and after. Also the pod -> Unit mapping, the label-selector check, the Event body and the
permissions the Role must grant. No I/O here, so every rule is a plain test.
"""

from __future__ import annotations

import time
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dask_adaptive.backends.base import Phase, Unit
from dask_adaptive.backends.kubernetes.api import FIELD_MANAGER

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# The lowest value the apiserver accepts (int32, excluding -2^31): retired pods go before any other.
LOWEST_COST = "-2147483647"
Pod = Mapping[str, Any]


def pod_name(pod: Pod) -> str:
    return str(pod.get("metadata", {}).get("name", ""))


def pod_ready(pod: Pod) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def pod_terminating(pod: Pod) -> bool:
    """On its way out: deletion requested, or its process ended (never counted as capacity)."""
    phase = pod.get("status", {}).get("phase")
    return bool(pod.get("metadata", {}).get("deletionTimestamp")) or phase in ("Succeeded", "Failed")


def pod_marked(pod: Pod) -> bool:
    """We set the low deletion cost on it: only ever done to retired (or cancelled) pods."""
    return (pod.get("metadata", {}).get("annotations") or {}).get(DELETION_COST) == LOWEST_COST


def owned_by(pod: Pod, deployment: str) -> bool:
    """Whether the pod is one of `deployment`'s: its controller is the Deployment's ReplicaSet, which
    Kubernetes names `<deployment>-<pod-template-hash>`. The label selector alone also admits any pod
    carrying the same labels (a headroom placeholder with the stack's labels, a pod made by hand, a
    selector written too broadly), and such a pod must never be counted, ranked, retired or deleted."""
    meta = pod.get("metadata", {})
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if not template_hash:
        return False
    owner = f"{deployment}-{template_hash}"
    return any(
        ref.get("controller") and ref.get("kind") == "ReplicaSet" and ref.get("name") == owner
        for ref in meta.get("ownerReferences") or []
    )


def pod_unit(pod: Pod, was_ready: bool = False) -> Unit:
    """Map a pod to the phase the controller reasons with.

    Running-but-NotReady means two different things: a worker still starting (never Ready: not yet
    capacity), or a retired worker whose readiness probe now fails (was Ready: its worker existed).
    Kubernetes does not say which, so the caller passes what it has seen (`was_ready`).
    """
    name = pod_name(pod)
    ready = pod_ready(pod)
    node = pod.get("spec", {}).get("nodeName") or None
    status = pod.get("status", {})
    # bound and not ended: its requests are reserved on a billed node (an ended pod holds nothing there)
    placed = node is not None and status.get("phase") not in ("Succeeded", "Failed")
    if pod_terminating(pod):
        return Unit(name, Phase.TERMINATING, ready, node, placed)
    if not pod.get("spec", {}).get("nodeName") or status.get("phase") != "Running":
        return Unit(name, Phase.PENDING, False, node, placed)
    if ready or was_ready or pod_marked(pod):
        return Unit(name, Phase.RUNNING, ready, node, placed)
    return Unit(name, Phase.STARTING, False, node, placed)


def deletion_rank(pod: Pod) -> int:
    """The ReplicaSet's first three ranking rules as one number: lower goes first.

    0 unscheduled, 1 Pending, 2 Unknown, 3 Running but NotReady, 4 Ready. Ties inside a class are broken
    by deletion cost (only from 1.22), then by things we do not control (node rank, age), so a tie with an
    unnamed pod is a risk.
    """
    if not pod.get("spec", {}).get("nodeName"):
        return 0
    phase = pod.get("status", {}).get("phase")
    if phase == "Pending":
        return 1
    if phase != "Running":
        return 2
    return 4 if pod_ready(pod) else 3


def units_in_deletion_order(pods: Iterable[Pod], seen_ready: Container[str]) -> tuple[Unit, ...]:
    """The pods as units, ordered as the ReplicaSet would delete them (deletion rank, then name).

    The controller cancels not-yet-arrived units phase by phase, keeping this order inside a phase; so an
    unschedulable pod is cancelled before one already bound to a node - the one a scale-down of the
    ReplicaSet removes first too, and the one that would have waited longest for capacity.
    """
    ordered = sorted(pods, key=lambda p: (deletion_rank(p), pod_name(p)))
    return tuple(pod_unit(p, pod_name(p) in seen_ready) for p in ordered)


@dataclass(frozen=True)
class RemovalPlan:
    """Whether one /scale decrement would take exactly the named pods."""

    present: tuple[str, ...]  # named pods still alive (not terminating)
    missing: tuple[str, ...]  # named pods already gone or terminating
    still_ready: tuple[str, ...]  # named pods whose readiness has not dropped yet
    outranking: tuple[
        str, ...
    ]  # unnamed live pods the ReplicaSet could pick before (or tie with) a named one
    waitable: bool = False  # time may fix it: a named pod is still Ready, or an outranking one is starting

    @property
    def safe(self) -> bool:
        return not self.still_ready and not self.outranking


def plan_removal(pods: Iterable[Pod], names: Iterable[str]) -> RemovalPlan:
    """Check the ReplicaSet ranking against our wish before lowering /scale.

    Safe only when every named pod is NotReady (or not yet running) and every other live pod ranks
    strictly after all named ones: then no deletion-cost support is needed (Kubernetes 1.20/1.21).
    """
    wanted = list(dict.fromkeys(names))
    live = {pod_name(p): p for p in pods if not pod_terminating(p)}
    present = tuple(n for n in wanted if n in live)
    missing = tuple(n for n in wanted if n not in live)
    still_ready = tuple(n for n in present if pod_ready(live[n]))
    worst = max((deletion_rank(live[n]) for n in present), default=-1)
    outranking = tuple(sorted(n for n, p in live.items() if n not in wanted and deletion_rank(p) <= worst))
    # A retired pod turns NotReady after a few probe periods, and a starting pod turns Ready soon; a Pending
    # pod may wait minutes for a node, so waiting for it is pointless.
    waitable = bool(still_ready) or any(deletion_rank(live[n]) == 3 for n in outranking)
    return RemovalPlan(present, missing, still_ready, outranking, waitable)


@dataclass(frozen=True)
class Verification:
    settled: bool  # the ReplicaSet is down to the target
    removed: tuple[str, ...]  # named pods now gone or terminating
    wrong: tuple[str, ...]  # unnamed pods that were alive before the scale-down and are gone now
    survivors: tuple[str, ...]  # named pods still alive


def verify_removal(
    before: Iterable[str], after: Iterable[Pod], names: Iterable[str], target: int
) -> Verification:
    """Compare the live pods before the /scale write with the pods now. Pure."""
    wanted = list(dict.fromkeys(names))
    alive = {pod_name(p) for p in after if not pod_terminating(p)}
    removed = tuple(n for n in wanted if n not in alive)
    survivors = tuple(n for n in wanted if n in alive)
    wrong = tuple(sorted(n for n in before if n not in wanted and n not in alive))
    settled = len(alive) <= target
    return Verification(settled, removed, wrong, survivors)


def parse_selector(selector: str) -> list[tuple[str, str, str]]:
    """Equality-based label selector terms ("k=v", "k==v", "k!=v", "k", "!k") as (key, op, value)."""
    terms = []
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            terms.append((k.strip(), "!=", v.strip()))
        elif "==" in term or "=" in term:
            k, v = term.split("==", 1) if "==" in term else term.split("=", 1)
            terms.append((k.strip(), "=", v.strip()))
        elif term.startswith("!"):
            terms.append((term[1:].strip(), "!", ""))
        elif " in " in term or " notin " in term or "(" in term:
            raise ValueError(f"set-based selector term {term!r} is not supported; use key=value terms")
        else:
            terms.append((term, "exists", ""))
    return terms


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    for key, op, value in parse_selector(selector):
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
    return True


def build_event(
    namespace: str, deployment: Mapping[str, Any], reason: str, message: str, now: datetime, instance: str
) -> dict[str, Any]:
    """A core/v1 Event about the Deployment, as `kubectl describe deployment` shows it."""
    meta = deployment.get("metadata", {})
    name = str(meta.get("name", ""))
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    warning = any(w in reason.lower() for w in ("wrong", "error", "fail", "denied"))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{time.time_ns():x}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
            "namespace": namespace,
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        },
        "reason": reason[:128],
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "source": {"component": FIELD_MANAGER, "host": instance},
        "reportingComponent": FIELD_MANAGER,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def required_permissions(deployment: str) -> list[tuple[str, str, str, str, str]]:
    """(verb, group, resource, subresource, name) the backend needs: the Role the Pulumi program grants."""
    return [
        ("get", "apps", "deployments", "scale", deployment),
        ("patch", "apps", "deployments", "scale", deployment),
        ("get", "apps", "deployments", "", deployment),
        ("list", "", "pods", "", ""),
        ("watch", "", "pods", "", ""),
        ("patch", "", "pods", "", ""),
        ("delete", "", "pods", "", ""),
        ("create", "", "events", "", ""),
    ]
