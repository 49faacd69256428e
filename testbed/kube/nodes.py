"""Nodes of the test kubelet: what it registers (`NodeSpec`) and the node groups its provisioner grows
(`NodeGroup`). The label and taint are the program's own (infra/facts/placement.py), not copies."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from infra.facts import placement

POOL_LABEL = placement.POOL_LABEL
# The node's taint as the API spells it.
WORKER_TAINT = {
    "key": placement.WORKER_TAINT.key,
    "value": placement.WORKER_TAINT.value,
    "effect": placement.WORKER_TAINT.effect,
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_quantity(q: str | int | float) -> Decimal:
    from kubernetes.utils.quantity import parse_quantity as pq

    return Decimal(pq(q))


@dataclass
class NodeSpec:
    """A node to register: capacity, labels and taints (our node groups: POOL_LABEL and WORKER_TAINT)."""

    name: str
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def pool(cls, name: str, group: str, *, worker: bool = False, **kw: Any) -> NodeSpec:
        """A node of node group `group`; `worker=True` adds the dask-worker NoSchedule taint."""
        labels = {POOL_LABEL: group, **kw.pop("labels", {})}
        taints = [dict(WORKER_TAINT)] if worker else []
        return cls(name=name, labels=labels, taints=taints + list(kw.pop("taints", [])), **kw)

    def manifest(self) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "node.kubernetes.io/instance-type": "test.harness",
            **self.labels,
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": [dict(t) for t in self.taints]} if self.taints else {},
        }

    def status(self) -> dict[str, Any]:
        cap = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods), "ephemeral-storage": "100Gi"}
        ts = now_iso()
        since = self.__dict__.setdefault("_since", ts)  # conditions keep their first transition time
        conditions = [
            {"type": t, "status": "False", "reason": f"Kubelet{r}", "lastHeartbeatTime": ts,
             "lastTransitionTime": since, "message": "test harness"}
            for t, r in (("MemoryPressure", "HasSufficientMemory"), ("DiskPressure", "HasNoDiskPressure"),
                         ("PIDPressure", "HasSufficientPID"))
        ]  # fmt: skip
        conditions.append(
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": ts,
             "lastTransitionTime": since, "message": "test harness kubelet is posting ready status"}
        )  # fmt: skip
        return {
            "capacity": cap,
            "allocatable": cap,
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.name},
            ],
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": os.uname().release,
                "osImage": "testbed/kube harness", "containerRuntimeVersion": "local-process://0",
                "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }  # fmt: skip


@dataclass
class NodeGroup:
    """A node group for the provisioner (a stand-in for cluster-autoscaler + an Auto Scaling Group)."""

    group: str
    worker: bool = True
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    min_size: int = 0
    max_size: int = 3
    scale_up_delay: float = 1.0  # pods Unschedulable this long before a node is asked for (CA's reaction)
    scale_down_delay: float = 5.0  # a provisioned node empty this long is removed (scale-down-unneeded-time)
    # scale-down-delay-after-add: no node of the group goes this long after its last scale-up (None: the
    # scale_down_delay, as this provisioner had one value for both before; the program sets both, 5m each
    # until issue 13)
    scale_down_delay_after_add: float | None = None
    boot_delay: float = 0.0  # an asked-for node joins this much later (boot + join); billed meanwhile
    # cluster-autoscaler's scale-down-utilization-threshold: a node whose pods request less than this share
    # and fit elsewhere is drained after scale_down_delay; 0: only empty nodes go
    scale_down_utilization: float = 0.0
    # The DaemonSet pods on each node (EKS: aws-node, kube-proxy, ...), as cluster-autoscaler sees them:
    # their requests count in its utilization (`--ignore-daemonsets-utilization=false`, its default) over
    # an allocatable of `cpu`/`memory` plus these (so `cpu`/`memory` stay the room left for our pods,
    # which is all the real kube-scheduler sees: the harness runs no DaemonSet pods).
    daemonset_cpu: str = "0"
    daemonset_memory: str = "0"
    ignore_daemonsets_utilization: bool = False
    # --unremovable-node-recheck-timeout (CA: 5m; here half the default unneeded time, as 5m is of CA's
    # 10m): a node whose removal simulation failed is not looked at again for this long
    unremovable_recheck: float = 2.5
    # --max-graceful-termination-sec (CA: 600) caps an evicted pod's grace period; --max-pod-eviction-time
    # (CA: 2m): how long a refused eviction (a PodDisruptionBudget) is retried before the drain fails
    max_graceful_termination: float = 600.0
    max_pod_eviction_time: float = 120.0

    @property
    def cooldown_after_add(self) -> float:
        after_add = self.scale_down_delay_after_add
        return self.scale_down_delay if after_add is None else after_add

    def spec(self, index: int) -> NodeSpec:
        return NodeSpec.pool(
            f"{self.group}-{uuid.uuid4().hex[:5]}-{index}",
            self.group,
            worker=self.worker,
            cpu=self.cpu,
            memory=self.memory,
            pods=self.pods,
        )
