"""The node provisioner of the test kubelet: a stand-in for cluster-autoscaler and an Auto Scaling Group.
Adds a node to a group when pods that fit it stay Unschedulable (after an optional boot delay, during
which the node is billed and counted as capacity on its way), removes empty provisioned nodes later, and
keeps the bill: node-seconds from each node's launch to its removal (benchmarks/node_cost.py).

With `NodeGroup.scale_down_utilization` > 0 it also drains under-used nodes whose pods fit elsewhere, as
cluster-autoscaler's scale-down-utilization-threshold does, by CA's rules (ca_rules.py, which cites the
source): utilization with DaemonSets counted, blockers (safe-to-evict, PodDisruptionBudgets), the
recheck back-off, the candidates' soft taint, and evictions through the Eviction API with the grace
capped. As cluster-autoscaler does, pods below the
expendable priority cutoff (`--expendable-pods-priority-cutoff`, default -10) neither ask for a node nor
keep one; placeholder pods at a priority from -10 up do both."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from testbed.kube import ca_rules
from testbed.kube.nodes import NodeGroup, parse_quantity
from testbed.kube.rest import ApiError

if TYPE_CHECKING:
    from testbed.kube.kubelet import Kubelet
    from testbed.kube.nodes import NodeSpec

# cluster-autoscaler's --expendable-pods-priority-cutoff default: lower-priority pods are ignored by it
EXPENDABLE_PRIORITY_CUTOFF = -10
SAFE_TO_EVICT = ca_rules.SAFE_TO_EVICT


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


def _first_fit(pods: list[dict[str, Any]], bins: list[list[Decimal]]) -> list[dict[str, Any]]:
    """Places `pods` first-fit into `bins` (free cpu, memory, pod slots; consumed); returns the rest."""
    rest = []
    for p in pods:
        needs = _needs(p)
        for b in bins:
            if all(have >= want for have, want in zip(b, needs, strict=True)):
                for i, want in enumerate(needs):
                    b[i] -= want
                break
        else:
            rest.append(p)
    return rest


def _needs(pod: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal]:
    return Decimal(sum(pod_request(pod, "cpu"))), Decimal(sum(pod_request(pod, "memory"))), Decimal(1)


class NodeProvisioner:
    """Adds a node to a group when pods stay Unschedulable for `scale_up_delay` (joining `boot_delay`
    later), removes empty provisioned nodes after `scale_down_delay` (none while the group cools down
    from its last scale-up: `cooldown_after_add`) — so Dask → pods → nodes scale
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
        self.evicted: list[tuple[float, str, str]] = []  # (monotonic time, node, pod) deleted by a drain
        self.launches: list[Launch] = []
        self.underused_since: dict[str, float] = {}
        self.last_scale_up: dict[str, float] = {}  # group -> when it last asked for a node
        self.draining: set[str] = set()
        self.evicting: dict[str, tuple[float, list[dict[str, Any]], dict[str, int]]] = {}
        self.unremovable = ca_rules.Unremovable()
        self.utilization: dict[str, Decimal] = {}  # node -> CA's utilization at its last look
        self.soft_tainted: set[str] = set()
        self._count = 0
        for g in self.groups:
            for _ in range(g.min_size):
                self._add(g, booted=True)  # the group's minimum is running when the test starts
        self._join_booted()

    def _add(self, g: NodeGroup, *, booted: bool = False) -> None:
        self._count += 1
        spec = g.spec(self._count)
        now = time.monotonic()
        if not booted:
            self.last_scale_up[g.group] = now
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
        bins = [*self._room(g, pods).values(), *(list(cap) for _ in self.booting[g.group])]
        return _first_fit(ripe, bins)

    def _room(
        self, g: NodeGroup, pods: list[dict[str, Any]], skip: str | None = None
    ) -> dict[str, list[Decimal]]:
        """Free cpu, memory and pod slots of the group's joined nodes (not draining, not `skip`)."""
        cap = [parse_quantity(g.cpu), parse_quantity(g.memory), Decimal(g.pods)]
        room = {n: list(cap) for n in self.nodes[g.group] if n != skip and n not in self.draining}
        for p in pods:
            node = p["spec"].get("nodeName")
            if node in room and p["status"].get("phase") not in ("Succeeded", "Failed"):
                for i, need in enumerate(_needs(p)):
                    room[node][i] -= need
        return room

    def _consider_drain(
        self, g: NodeGroup, pods: list[dict[str, Any]], now: float, pdbs: Sequence[dict[str, Any]] = ()
    ) -> None:
        """cluster-autoscaler's scale-down of an under-used node (ca_rules.py cites the source): its
        utilization, DaemonSets counted, is below `scale_down_utilization`; nothing blocks it
        (safe-to-evict "false", a bare pod, a PodDisruptionBudget) and its pods fit the room of the
        group's other nodes - for `scale_down_delay` on end, and not while the group cools down after a
        scale-up. A node whose simulation fails is put aside for `unremovable_recheck`. Then the node
        is tainted ToBeDeleted and its pods are evicted (Eviction API, grace capped); it goes once they
        are gone. One node at a time, as cluster-autoscaler drains one non-empty node at a time."""
        alloc = self._allocatable(g)
        ds = [self._daemonset(g)]
        for name in self.nodes[g.group]:
            mine = [
                p
                for p in pods
                if p["spec"].get("nodeName") == name
                and p["status"].get("phase") not in ("Succeeded", "Failed")
            ]
            if not mine or any(p["metadata"].get("deletionTimestamp") for p in mine):
                self.underused_since.pop(name, None)
                continue
            reqs = [ca_rules.Requests(*_needs(p)[:2]) for p in mine]
            used = ca_rules.utilization(reqs, ds, alloc, ignore_daemonsets=g.ignore_daemonsets_utilization)
            self.utilization[name] = used
            if used >= Decimal(str(g.scale_down_utilization)):
                self.underused_since.pop(name, None)  # not under-used: looked at again next time
                continue
            if self.unremovable.put_aside(name, now):
                self.underused_since.pop(name, None)
                continue
            reason = ca_rules.removal_blocker(mine, pdbs)
            if reason is None and _first_fit(mine, list(self._room(g, pods, skip=name).values())):
                reason = "NoPlaceToMovePods"
            if reason is not None:
                self.unremovable.add(name, reason, now, g.unremovable_recheck)
                self.underused_since.pop(name, None)
                continue
            since = self.underused_since.setdefault(name, now)
            if now - since < g.scale_down_delay or self._cooling_down(g, now):
                continue
            self._set_taint(name, ca_rules.TO_BE_DELETED_TAINT, "NoSchedule")
            self.draining.add(name)
            self.events.append((now, "drain", name))
            grace = {
                p["metadata"]["uid" if "uid" in p["metadata"] else "name"]: ca_rules.eviction_grace(
                    p["spec"].get("terminationGracePeriodSeconds"), g.max_graceful_termination
                )
                for p in mine
            }
            self.evicting[name] = (now + g.max_pod_eviction_time, mine, grace)
            self._evict_pending(name, now)
            return

    def _evict_pending(self, node: str, now: float) -> None:
        """Ask the Eviction API for each pod of a draining node not yet evicted; a refusal (429: a
        PodDisruptionBudget) is retried on later steps until the deadline, then the drain fails: the
        node loses its ToBeDeleted taint and is put aside until its recheck time (drain.go)."""
        deadline, left, grace = self.evicting[node]
        rest = self.kubelet.rest
        still = []
        for p in left:
            meta = p["metadata"]
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/eviction"
            body = {
                "apiVersion": "policy/v1beta1",
                "kind": "Eviction",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "deleteOptions": {"gracePeriodSeconds": grace[meta.get("uid", meta["name"])]},
            }
            try:
                rest.post(path, body)
            except ApiError as exc:
                if exc.status != 404:  # gone already counts as evicted
                    still.append(p)
                    continue
            self.evicted.append((now, node, meta["name"]))
        if not still:
            del self.evicting[node]
        elif now >= deadline:
            del self.evicting[node]
            self.draining.discard(node)
            self._set_taint(node, ca_rules.TO_BE_DELETED_TAINT, None)
            self.events.append((now, "drain-failed", node))
            group = next(g for g in self.groups if node in self.nodes[g.group])
            self.unremovable.add(node, "EvictionFailed", now, group.unremovable_recheck)
        else:
            self.evicting[node] = (deadline, still, grace)

    def _set_taint(self, node: str, key: str, effect: str | None) -> None:
        """Add (effect given) or take off (None) one taint of the Node object; merge-patches spec.taints."""
        rest = self.kubelet.rest
        with contextlib.suppress(ApiError):
            taints = (rest.get(f"/api/v1/nodes/{node}").get("spec") or {}).get("taints") or []
            new = (
                ca_rules.with_taint(taints, key, effect, str(int(time.time())))
                if effect
                else ca_rules.without_taint(taints, key)
            )
            rest.patch(f"/api/v1/nodes/{node}", {"spec": {"taints": new}})

    def _soft_taint(self, unneeded: set[str]) -> None:
        """Candidates get DeletionCandidateOfClusterAutoscaler (PreferNoSchedule) - kube-scheduler then
        prefers other nodes for new pods - and lose it when they stop being candidates (softtaint.go)."""
        add, remove = ca_rules.soft_taint_changes(unneeded, self.soft_tainted)
        for node in sorted(add):
            self._set_taint(node, ca_rules.DELETION_CANDIDATE_TAINT, "PreferNoSchedule")
        for node in sorted(remove):
            if any(node in self.nodes[g.group] for g in self.groups):
                self._set_taint(node, ca_rules.DELETION_CANDIDATE_TAINT, None)
        self.soft_tainted = (self.soft_tainted | add) - remove

    def _allocatable(self, g: NodeGroup) -> ca_rules.Requests:
        room, ds = ca_rules.Requests(parse_quantity(g.cpu), parse_quantity(g.memory)), self._daemonset(g)
        return room + ds

    @staticmethod
    def _daemonset(g: NodeGroup) -> ca_rules.Requests:
        return ca_rules.Requests(parse_quantity(g.daemonset_cpu), parse_quantity(g.daemonset_memory))

    def _pdbs(self) -> list[dict[str, Any]]:
        with contextlib.suppress(ApiError, AttributeError):
            return self.kubelet.rest.items("/apis/policy/v1beta1/poddisruptionbudgets")
        return []

    def _cooling_down(self, g: NodeGroup, now: float) -> bool:
        """cluster-autoscaler's scale-down-delay-after-add: after a scale-up no node goes for a while (it
        keeps counting how long each one is unneeded meanwhile)."""
        return now - self.last_scale_up.get(g.group, -math.inf) < g.cooldown_after_add

    def _remove(self, g: NodeGroup, name: str, now: float) -> None:
        # Delete first and update our lists last: a test waiting for `nodes` to shrink then finds the
        # Node object gone and the event recorded.
        self.kubelet.remove_node(name)
        self.events.append((now, "remove", name))
        for launch in self.launches:
            if launch.name == name and launch.removed is None:
                launch.removed = now
        self.empty_since.pop(name, None)
        self.underused_since.pop(name, None)
        self.draining.discard(name)
        self.evicting.pop(name, None)
        self.unremovable.forget(name)
        self.soft_tainted.discard(name)
        self.nodes[g.group].remove(name)

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
            for name in [n for n in self.evicting if n in self.nodes[g.group]]:
                self._evict_pending(name, now)  # evictions a PodDisruptionBudget refused so far
            # A drained node goes once its pods are gone.
            for name in [n for n in self.nodes[g.group] if n in self.draining and n not in busy]:
                self._remove(g, name, now)
            # Scale down: provisioned nodes beyond min_size that stayed empty for scale_down_delay, and
            # never while pods that would fit the group still wait for a node.
            if any(pod_fits_group(p, g) for p in unscheduled):
                for name in self.nodes[g.group]:
                    self.empty_since[name] = now
                self.underused_since.clear()
                self._soft_taint(self.soft_tainted - set(self.nodes[g.group]))
                continue
            for name in list(self.nodes[g.group]):
                if name in busy or name in self.draining:
                    self.empty_since.pop(name, None)
                    continue
                since = self.empty_since.setdefault(name, now)
                if (
                    now - since >= g.scale_down_delay
                    and len(self.nodes[g.group]) > g.min_size
                    and not self._cooling_down(g, now)
                ):
                    self._remove(g, name, now)
            mine = set(self.nodes[g.group])
            if g.scale_down_utilization > 0 and not self.draining & mine and len(mine) > g.min_size:
                self._consider_drain(g, pods, now, self._pdbs())
            if not self._cooling_down(g, now):  # CA updates the soft taints only outside the cooldown
                counting = {n for n in self.empty_since if n in mine} | (set(self.underused_since) & mine)
                self._soft_taint((self.soft_tainted - mine) | (counting - self.draining))
