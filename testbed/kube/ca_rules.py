"""cluster-autoscaler's scale-down rules as pure functions, for the provisioner that stands in for it.

Read from kubernetes/autoscaler (cluster-autoscaler), its master branch as stored in the search library
in 2026-12 (no release tag read; commits named where a file's was shown):
- utilization: `simulator/utilization/info.go` (commit 1acc8c203c25): a node's utilization is the larger
  of its cpu and memory ratios; each ratio is the sum of the requests of the pods on the node over its
  allocatable. DaemonSet (and mirror) pods count like any other pod unless DaemonSets are skipped
  (`--ignore-daemonsets-utilization`, default false); when skipped, their requests are taken off the
  allocatable instead of added to the numerator. Pods terminating for long are left out.
- the recheck back-off: `core/scaledown/planner/planner.go` (`categorizeNodes`) and
  `core/scaledown/unremovable/nodes.go`: a node whose removal simulation failed (its pods cannot move,
  a PodDisruptionBudget or an annotation blocks it) is put aside until now +
  `--unremovable-node-recheck-timeout` (default 5m); a node merely above the utilization threshold is
  not put aside (it is looked at again on the next loop).
- candidates' soft taint: `core/scaledown/actuation/softtaint.go` and `utils/taints/taints.go`: nodes
  found unneeded get `DeletionCandidateOfClusterAutoscaler` with effect PreferNoSchedule (value: the
  unix time), taken off when they stop being unneeded; a node being deleted gets
  `ToBeDeletedByClusterAutoscaler` (NoSchedule).
- evictions: `core/scaledown/actuation/drain.go` (commit 1d0777f716ca): each pod is evicted through the
  Eviction subresource (so the apiserver enforces PodDisruptionBudgets) with a grace period of the
  pod's terminationGracePeriodSeconds (30 if unset) capped at `--max-graceful-termination-sec`
  (default 600); a refused eviction is retried until `--max-pod-eviction-time` (2m) has passed, then the
  node's scale-down fails.
- blockers (`simulator/drainability/rules/notsafetoevict/rule.go`, `.../replicated/rule.go`,
  `.../safetoevict/rule.go`, `.../pdb/rule.go`): a pod annotated
  `cluster-autoscaler.kubernetes.io/safe-to-evict: "false"` blocks its node; a pod with no controller
  blocks it unless annotated "true"; a PodDisruptionBudget whose `status.disruptionsAllowed` is less than
  the node's pods it selects blocks it.
Facts only; no code is copied. Times here are whatever unit the caller uses (the benchmarks compress)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"
DELETION_CANDIDATE_TAINT = "DeletionCandidateOfClusterAutoscaler"
TO_BE_DELETED_TAINT = "ToBeDeletedByClusterAutoscaler"
# cluster-autoscaler's defaults, in seconds
UNREMOVABLE_RECHECK_S = 300.0
MAX_GRACEFUL_TERMINATION_S = 600.0
MAX_POD_EVICTION_S = 120.0
DEFAULT_POD_GRACE_S = 30  # Kubernetes' default terminationGracePeriodSeconds


@dataclass(frozen=True)
class Requests:
    cpu: Decimal  # cores
    memory: Decimal  # bytes

    def __add__(self, other: Requests) -> Requests:
        return Requests(self.cpu + other.cpu, self.memory + other.memory)


ZERO = Requests(Decimal(0), Decimal(0))


def total(items: Iterable[Requests]) -> Requests:
    out = ZERO
    for r in items:
        out = out + r
    return out


def utilization(
    pods: Sequence[Requests],
    daemonsets: Sequence[Requests],
    allocatable: Requests,
    *,
    ignore_daemonsets: bool = False,
) -> Decimal:
    """max(cpu, memory) of requests over allocatable, as CA computes it (info.go): DaemonSet pods in the
    numerator by default; with `ignore_daemonsets` taken off the allocatable instead."""
    used, ds = total(pods), total(daemonsets)
    ratios = []
    for u, d, a in ((used.cpu, ds.cpu, allocatable.cpu), (used.memory, ds.memory, allocatable.memory)):
        ratios.append(u / (a - d) if ignore_daemonsets else (u + d) / a)
    return max(ratios)


def eviction_grace(pod_grace: int | None, max_graceful: float) -> int:
    """The grace period CA's eviction asks for: the pod's own (30 s if unset), capped at
    max-graceful-termination-sec when that is > 0 (drain.go)."""
    grace = DEFAULT_POD_GRACE_S if pod_grace is None else int(pod_grace)
    return min(grace, int(max_graceful)) if max_graceful > 0 else grace


def _controlled(pod: Mapping[str, Any]) -> bool:
    return any(o.get("controller") for o in pod["metadata"].get("ownerReferences") or [])


def _selects(pdb: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """matchLabels selectors only (what this project's budgets use); an empty selector selects nothing
    in policy/v1beta1 and everything in policy/v1 - we treat a missing one as nothing."""
    if pdb["metadata"].get("namespace") != pod["metadata"].get("namespace"):
        return False
    want = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    labels = pod["metadata"].get("labels") or {}
    return bool(want) and all(labels.get(k) == v for k, v in want.items())


def removal_blocker(pods: Sequence[Mapping[str, Any]], pdbs: Sequence[Mapping[str, Any]] = ()) -> str | None:
    """Why CA would refuse to remove a node holding `pods` (None: nothing blocks it): an annotation
    `safe-to-evict: "false"`, a pod no controller would recreate, or a PodDisruptionBudget allowing fewer
    disruptions than the node's pods it selects. The reasons are CA's names for them."""
    for p in pods:
        annotation = (p["metadata"].get("annotations") or {}).get(SAFE_TO_EVICT)
        if annotation == "false":
            return "NotSafeToEvictAnnotation"
        if not _controlled(p) and annotation != "true":
            return "NotReplicated"
    for pdb in pdbs:
        selected = sum(1 for p in pods if _selects(pdb, p))
        allowed = int((pdb.get("status") or {}).get("disruptionsAllowed", 0))
        if selected and selected > allowed:
            return "NotEnoughPdb"
    return None


class Unremovable:
    """Nodes put aside after a failed removal simulation, each until its recheck time (planner.go)."""

    def __init__(self) -> None:
        self.until: dict[str, float] = {}
        self.reasons: dict[str, str] = {}

    def add(self, node: str, reason: str, now: float, recheck: float) -> None:
        self.until[node] = now + recheck
        self.reasons[node] = reason

    def put_aside(self, node: str, now: float) -> bool:
        """True while the node waits for its recheck; forgets it once the time is up."""
        until = self.until.get(node)
        if until is None:
            return False
        if now < until:
            return True
        del self.until[node]
        self.reasons.pop(node, None)
        return False

    def forget(self, node: str) -> None:
        self.until.pop(node, None)
        self.reasons.pop(node, None)


def with_taint(
    taints: Sequence[Mapping[str, str]], key: str, effect: str, value: str
) -> list[dict[str, str]]:
    """The node's taints with `key` set (replaced if present)."""
    return [*(dict(t) for t in taints if t.get("key") != key), {"key": key, "value": value, "effect": effect}]


def without_taint(taints: Sequence[Mapping[str, str]], key: str) -> list[dict[str, str]]:
    return [dict(t) for t in taints if t.get("key") != key]


def soft_taint_changes(unneeded: set[str], tainted: set[str]) -> tuple[set[str], set[str]]:
    """(nodes to give the candidate taint, nodes to take it from) (softtaint.go)."""
    return unneeded - tainted, tainted - unneeded
