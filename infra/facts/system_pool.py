"""What the system node group must hold besides the Dask scheduler, and whether one more pod fits it.

The system pool is fixed-size (no autoscaler): a pod that fits no node stays Pending forever. Its nodes
run, besides the DaemonSets already counted in `instance_types.pod_capacity`:
- the scheduler (the stack's `schedulerCpu` / `schedulerMemory`);
- CoreDNS: the EKS addon's two replicas request 100m CPU and 70Mi each;
- the EBS CSI controller (only with the notebook): two replicas of six containers (driver, provisioner,
  attacher, snapshotter, resizer, liveness probe), about 10m / 40Mi each in the addon's defaults, so
  60m / 240Mi per replica (figures of the driver's Helm chart; only EKS can confirm the addon's own);
- cluster-autoscaler requests nothing (its chart's default), so it is not counted.

Packing is first-fit decreasing over the pool's nodes, the way a scheduler that never preempts would end
up at best: if it fails, the pods cannot all run.
"""

from __future__ import annotations

from collections.abc import Sequence

from infra.facts.instance_types import Resources

COREDNS = (Resources(100, 70), Resources(100, 70))
EBS_CSI_CONTROLLER = (Resources(60, 240), Resources(60, 240))


def packs(node: Resources, nodes: int, pods: Sequence[Resources]) -> bool:
    """Do `pods` fit on `nodes` nodes of `node` free capacity each (first fit, largest memory first)?"""
    free = [[node.cpu_millicores, node.memory_mib] for _ in range(nodes)]
    for pod in sorted(pods, key=lambda p: (p.memory_mib, p.cpu_millicores), reverse=True):
        for room in free:
            if pod.cpu_millicores <= room[0] and pod.memory_mib <= room[1]:
                room[0] -= pod.cpu_millicores
                room[1] -= pod.memory_mib
                break
        else:
            return False
    return True


def system_pods(scheduler: Resources, *, ebs_csi: bool) -> tuple[Resources, ...]:
    """What the system pool holds before any optional workload (the notebook) is placed on it."""
    return (scheduler, *COREDNS, *(EBS_CSI_CONTROLLER if ebs_csi else ()))
