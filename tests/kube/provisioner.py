"""The node provisioner of the test kubelet: a stand-in for cluster-autoscaler and an Auto Scaling Group.
Adds a node to a group when pods that fit it stay Unschedulable (after an optional boot delay, during
which the node is billed and counted as capacity on its way), removes empty provisioned nodes later, and
keeps the bill: node-seconds from each node's launch to its removal (benchmarks/node_cost.py).

As cluster-autoscaler does, pods below the expendable priority cutoff (`--expendable-pods-priority-cutoff`,
default -10) neither ask for a node nor keep one; placeholder pods at a priority from -10 up do both."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tests.kube.nodes import NodeGroup, parse_quantity

if TYPE_CHECKING:
    from tests.kube.kubelet import Kubelet
    from tests.kube.nodes import NodeSpec

# cluster-autoscaler's --expendable-pods-priority-cutoff default: lower-priority pods are ignored by it
EXPENDABLE_PRIORITY_CUTOFF = -10


@dataclass
class Launch:
    """One node's life as the bill sees it: asked for at `launched`, joined at `joined`, gone at `removed`."""

    name: str
    group: str
    launched: float
    joined: float | None = None
    removed: float | None = None


def node_seconds(launches: Sequence[Launch], start: float, end: float) -> float:
    """Node-seconds billed within [start, end]: each node from its launch (boot is paid) to its removal."""
    total = 0.0
    for n in launches:
        lo, hi = max(start, n.launched), min(end, n.removed if n.removed is not None else end)
        total += max(0.0, hi - lo)
    return total


def node_count_steps(launches: Sequence[Launch], start: float, end: float) -> list[tuple[float, int]]:
    """(time, billed nodes from then on) at `start` and at each launch/removal up to `end`: for plots."""
    changes = sorted(
        [(n.launched, 1) for n in launches] + [(n.removed, -1) for n in launches if n.removed is not None]
    )
    count, steps = 0, []
    for t, d in changes:
        if t > start:
            break
        count += d
    steps.append((start, count))
    for t, d in changes:
        if start < t <= end:
            count += d
            steps.append((t, count))
    return steps


def expendable(pod: dict[str, Any], cutoff: int = EXPENDABLE_PRIORITY_CUTOFF) -> bool:
    return (pod["spec"].get("priority") or 0) < cutoff


def _tolerates(pod: dict[str, Any], taint: dict[str, str]) -> bool:
    for t in pod["spec"].get("tolerations") or []:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint["key"]):
            return True
        if t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def pod_fits_group(pod: dict[str, Any], group: NodeGroup) -> bool:
    """Would a fresh node of `group` accept this pod (nodeSelector, taints, requests)?"""
    spec = group.spec(0)
    labels = spec.manifest()["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in (pod["spec"].get("nodeSelector") or {}).items()):
        return False
    if any(not _tolerates(pod, t) for t in spec.taints if t["effect"] in ("NoSchedule", "NoExecute")):
        return False
    cpu = sum(pod_request(pod, "cpu"))
    mem = sum(pod_request(pod, "memory"))
    return cpu <= parse_quantity(group.cpu) and mem <= parse_quantity(group.memory)


def pod_request(pod: dict[str, Any], res: str) -> list[Decimal]:
    return [
        parse_quantity(((c.get("resources") or {}).get("requests") or {}).get(res, "0"))
        for c in pod["spec"].get("containers", [])
    ]


def _needs(pod: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal]:
    return Decimal(sum(pod_request(pod, "cpu"))), Decimal(sum(pod_request(pod, "memory"))), Decimal(1)


class NodeProvisioner:
    """Adds a node to a group when pods stay Unschedulable for `scale_up_delay` (joining `boot_delay`
    later), removes empty provisioned nodes after `scale_down_delay` — so Dask → pods → nodes scale
    together in tests. `launches` is the bill (monotonic times)."""

    def __init__(
        self,
        kubelet: Kubelet,
        groups: Sequence[NodeGroup],
        *,
        expendable_priority_cutoff: int = EXPENDABLE_PRIORITY_CUTOFF,
    ) -> None:
        self.kubelet = kubelet
        self.groups = list(groups)
        self.cutoff = expendable_priority_cutoff
        self.nodes: dict[str, list[str]] = {g.group: [] for g in groups}
        self.booting: dict[str, list[tuple[float, NodeSpec]]] = {g.group: [] for g in groups}
        self.pending_since: dict[str, float] = {}
        self.empty_since: dict[str, float] = {}
        self.events: list[tuple[float, str, str]] = []  # (monotonic time, "add"/"remove", node name)
        self.launches: list[Launch] = []
        self._count = 0
        for g in self.groups:
            for _ in range(g.min_size):
                self._add(g, booted=True)  # the group's minimum is running when the test starts
        self._join_booted()

    def _add(self, g: NodeGroup, *, booted: bool = False) -> None:
        self._count += 1
        spec = g.spec(self._count)
        now = time.monotonic()
        self.launches.append(Launch(spec.name, g.group, now))
        self.booting[g.group].append((now if booted else now + g.boot_delay, spec))

    def _join_booted(self) -> None:
        now = time.monotonic()
        for g in self.groups:
            for ready_at, spec in list(self.booting[g.group]):
                if ready_at > now:
                    continue
                self.kubelet.add_node(spec)
                joined = time.monotonic()
                self.empty_since[spec.name] = joined  # a new node gets the full delay before removal
                self.events.append((joined, "add", spec.name))
                self.nodes[g.group].append(spec.name)
                self.booting[g.group].remove((ready_at, spec))
                for launch in self.launches:
                    if launch.name == spec.name:
                        launch.joined = joined

    def node_seconds(self, start: float, end: float) -> float:
        return node_seconds(self.launches, start, end)

    def billed(self) -> int:
        """Nodes launched and not removed (booting ones included)."""
        return sum(1 for n in self.launches if n.removed is None)

    def _unplaced(
        self, g: NodeGroup, ripe: list[dict[str, Any]], pods: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The pods of `ripe` that do not fit (first fit) the free room of the group's nodes and of its
        booting nodes; `pods` are the live pods (the bound ones take room)."""
        cap = [parse_quantity(g.cpu), parse_quantity(g.memory), Decimal(g.pods)]
        room = {name: list(cap) for name in self.nodes[g.group]}
        for p in pods:
            node = p["spec"].get("nodeName")
            if node in room and p["status"].get("phase") not in ("Succeeded", "Failed"):
                for i, need in enumerate(_needs(p)):
                    room[node][i] -= need
        bins = [*room.values(), *(list(cap) for _ in self.booting[g.group])]
        rest = []
        for p in ripe:
            needs = _needs(p)
            for b in bins:
                if all(have >= want for have, want in zip(b, needs, strict=True)):
                    for i, want in enumerate(needs):
                        b[i] -= want
                    break
            else:
                rest.append(p)
        return rest

    def step(self, pods: list[dict[str, Any]]) -> None:
        self._join_booted()
        now = time.monotonic()
        pods = [p for p in pods if not expendable(p, self.cutoff)]
        unscheduled = [
            p for p in pods if not p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
        ]
        unschedulable = []
        for pod in unscheduled:
            conds = {c["type"]: c for c in pod["status"].get("conditions") or []}
            sched = conds.get("PodScheduled")
            if sched and sched.get("status") == "False" and sched.get("reason") == "Unschedulable":
                unschedulable.append(pod)
        current = {p["metadata"]["uid"] for p in unschedulable}
        self.pending_since = {k: v for k, v in self.pending_since.items() if k in current}
        busy = {
            p["spec"].get("nodeName")
            for p in pods
            if p["spec"].get("nodeName") and p["status"].get("phase") not in ("Succeeded", "Failed")
        }
        for g in self.groups:
            waiting = [p for p in unschedulable if pod_fits_group(p, g)]
            for p in waiting:
                self.pending_since.setdefault(p["metadata"]["uid"], now)
            ripe = [p for p in waiting if now - self.pending_since[p["metadata"]["uid"]] >= g.scale_up_delay]
            size = len(self.nodes[g.group]) + len(self.booting[g.group])
            if ripe and size < g.max_size:
                # As cluster-autoscaler does, pods that fit the free room of the group's nodes, or of nodes
                # still booting, need no new node: the scheduler backs Unschedulable pods off for seconds,
                # so a node that just joined looks full of room while they wait.
                rest = self._unplaced(g, ripe, pods)
                need = 0
                if rest:
                    cpu = sum(sum(pod_request(p, "cpu")) for p in rest)
                    mem = sum(sum(pod_request(p, "memory")) for p in rest)
                    need = max(
                        math.ceil(cpu / parse_quantity(g.cpu)),
                        math.ceil(mem / parse_quantity(g.memory)),
                        math.ceil(len(rest) / g.pods),
                        1,
                    )
                for _ in range(max(0, min(need, g.max_size - size))):
                    self._add(g)
                for p in ripe:
                    self.pending_since[p["metadata"]["uid"]] = now  # give the scheduler time
            # Scale down: provisioned nodes beyond min_size that stayed empty for scale_down_delay, and
            # never while pods that would fit the group still wait for a node.
            if any(pod_fits_group(p, g) for p in unscheduled):
                for name in self.nodes[g.group]:
                    self.empty_since[name] = now
                continue
            for name in list(self.nodes[g.group]):
                if name in busy:
                    self.empty_since.pop(name, None)
                    continue
                since = self.empty_since.setdefault(name, now)
                if now - since >= g.scale_down_delay and len(self.nodes[g.group]) > g.min_size:
                    # Delete first and update our lists last: a test waiting for `nodes` to shrink then
                    # finds the Node object gone and the event recorded.
                    self.kubelet.remove_node(name)
                    self.events.append((now, "remove", name))
                    for launch in self.launches:
                        if launch.name == name and launch.removed is None:
                            launch.removed = now
                    self.empty_since.pop(name, None)
                    self.nodes[g.group].remove(name)
