"""The node provisioner of the test kubelet: a stand-in for cluster-autoscaler and an Auto Scaling Group.
Adds a node to a group when pods that fit it stay Unschedulable, removes empty provisioned nodes later."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from tests.kube.nodes import NodeGroup, parse_quantity

if TYPE_CHECKING:
    from tests.kube.kubelet import Kubelet


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


class NodeProvisioner:
    """Adds a node to a group when pods stay Unschedulable for `scale_up_delay`, removes empty
    provisioned nodes after `scale_down_delay` — so Dask → pods → nodes scale together in tests."""

    def __init__(self, kubelet: Kubelet, groups: Sequence[NodeGroup]) -> None:
        self.kubelet = kubelet
        self.groups = list(groups)
        self.nodes: dict[str, list[str]] = {g.group: [] for g in groups}
        self.pending_since: dict[str, float] = {}
        self.empty_since: dict[str, float] = {}
        self.events: list[tuple[float, str, str]] = []  # (monotonic time, "add"/"remove", node name)
        self._count = 0
        for g in self.groups:
            for _ in range(g.min_size):
                self._add(g)

    def _add(self, g: NodeGroup) -> None:
        self._count += 1
        spec = g.spec(self._count)
        self.kubelet.add_node(spec)
        self.empty_since[spec.name] = time.monotonic()  # a new node gets the full delay before removal
        self.events.append((time.monotonic(), "add", spec.name))
        self.nodes[g.group].append(spec.name)

    def step(self, pods: list[dict[str, Any]]) -> None:
        now = time.monotonic()
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
            empty = [n for n in self.nodes[g.group] if n not in busy]
            waiting = [p for p in unschedulable if pod_fits_group(p, g)]
            for p in waiting:
                self.pending_since.setdefault(p["metadata"]["uid"], now)
            ripe = [p for p in waiting if now - self.pending_since[p["metadata"]["uid"]] >= g.scale_up_delay]
            if ripe and len(self.nodes[g.group]) < g.max_size:
                cpu = sum(sum(pod_request(p, "cpu")) for p in ripe)
                mem = sum(sum(pod_request(p, "memory")) for p in ripe)
                need = max(
                    math.ceil(cpu / parse_quantity(g.cpu)),
                    math.ceil(mem / parse_quantity(g.memory)),
                    math.ceil(len(ripe) / g.pods),
                    1,
                )
                # Nodes added but still empty are capacity on its way (the scheduler backs off
                # Unschedulable pods for a few seconds): count them, as cluster-autoscaler does.
                need -= len(empty)
                for _ in range(max(0, min(need, g.max_size - len(self.nodes[g.group])))):
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
                    self.empty_since.pop(name, None)
                    self.nodes[g.group].remove(name)
