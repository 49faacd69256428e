"""What a worker pod can actually get on a node of a given EC2 instance type.

Worker requests are sized so that N workers fill one node. Sizing them from the nominal instance size
would leave every worker Pending forever (the node's allocatable is smaller), so we compute allocatable
the way the EKS AMI configures the kubelet, and subtract what the EKS DaemonSets request.

Sources (numbers re-derived here, not copied):
- vCPUs and memory: the EC2 instance type specifications (docs.aws.amazon.com/ec2/latest/instancetypes).
- max pods: awslabs/amazon-eks-ami `eni-max-pods.txt` = ENIs x (IPv4 addresses per ENI - 1) + 2.
- kube-reserved: awslabs/amazon-eks-ami nodeadm `internal/kubelet/config.go`:
  memory = 11 MiB x maxPods + 255 MiB; CPU = 6% of the first core, 1% of the second, 0.5% of cores 3-4,
  0.25% of every further core. Eviction threshold `memory.available<100Mi`. No system-reserved.
- The kubelet's memory *capacity* is the kernel's MemTotal, a few percent under the nominal size. We
  subtract 7.5% of nominal, the default of Karpenter's `vmMemoryOverheadPercent`, which errs on the low
  side (e.g. an m5.large reports about 7.57 GiB of 8 GiB).
- Max pods is the uncapped ENI value. Managed node groups cap it at 110 (under 30 vCPUs), which lowers
  kube-reserved; using the higher value reserves more and so can only under-fill a node, never over-fill.

Only x86_64 families are listed: the stock Dask image is what the pods run, and we do not claim arm64.
"""

from __future__ import annotations

from dataclasses import dataclass

MEMORY_EVICTION_MIB = 100
VM_MEMORY_OVERHEAD_FRACTION = 0.075

# DaemonSets on every EKS node: aws-node (vpc-cni) requests 25m CPU, kube-proxy 100m CPU; neither requests
# memory. The memory figure is headroom for them and for any node agent added later.
DAEMONSET_CPU_MILLICORES = 150
DAEMONSET_MEMORY_MIB = 256


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: int
    max_pods: int


@dataclass(frozen=True)
class Resources:
    cpu_millicores: int
    memory_mib: int


def _family(prefix: str, shapes: dict[str, tuple[int, int, int]]) -> dict[str, InstanceType]:
    return {
        f"{prefix}.{size}": InstanceType(f"{prefix}.{size}", vcpus, gib, pods)
        for size, (vcpus, gib, pods) in shapes.items()
    }


# size -> (vCPUs, memory GiB, ENI max pods) for the general purpose (m), compute (c), memory (r) lines.
_M = {
    "large": (2, 8, 29),
    "xlarge": (4, 16, 58),
    "2xlarge": (8, 32, 58),
    "4xlarge": (16, 64, 234),
    "8xlarge": (32, 128, 234),
}
_C = {"large": (2, 4, 29), "xlarge": (4, 8, 58), "2xlarge": (8, 16, 58), "4xlarge": (16, 32, 234)}
_R = {"large": (2, 16, 29), "xlarge": (4, 32, 58), "2xlarge": (8, 64, 58), "4xlarge": (16, 128, 234)}
_T3 = {
    "micro": (2, 1, 4),
    "small": (2, 2, 11),
    "medium": (2, 4, 17),
    "large": (2, 8, 35),
    "xlarge": (4, 16, 58),
    "2xlarge": (8, 32, 58),
}

INSTANCE_TYPES: dict[str, InstanceType] = {
    **_family("t3", _T3),
    **_family("t3a", _T3),
    **{k: v for p in ("m5", "m5a", "m6i", "m6a", "m7i", "m7a") for k, v in _family(p, _M).items()},
    **{k: v for p in ("c5", "c6i", "c6a", "c7i") for k, v in _family(p, _C).items()},
    **{k: v for p in ("r5", "r6i", "r6a", "r7i") for k, v in _family(p, _R).items()},
}


def kube_reserved_cpu_millicores(vcpus: int) -> int:
    """EKS AMI kube-reserved CPU: a falling percentage per core band (integer millicores, floored)."""
    total = vcpus * 1000
    bands = ((0, 1000, 600), (1000, 2000, 100), (2000, 4000, 50), (4000, max(total, 4000), 25))
    return sum(
        (min(total, end) - start) * basis_points // 10000
        for start, end, basis_points in bands
        if total > start
    )


def kube_reserved_memory_mib(max_pods: int) -> int:
    """EKS AMI kube-reserved memory grows with pod density."""
    return 11 * max_pods + 255


def allocatable(instance_type: str) -> Resources:
    """Node allocatable as the kubelet will report it (conservatively), before any pod is scheduled."""
    spec = INSTANCE_TYPES[instance_type]
    capacity_mib = int(spec.memory_gib * 1024 * (1 - VM_MEMORY_OVERHEAD_FRACTION))
    memory = capacity_mib - kube_reserved_memory_mib(spec.max_pods) - MEMORY_EVICTION_MIB
    cpu = spec.vcpus * 1000 - kube_reserved_cpu_millicores(spec.vcpus)
    return Resources(cpu_millicores=cpu, memory_mib=memory)


def pod_capacity(instance_type: str) -> Resources:
    """What is left for our pods on an otherwise empty node: allocatable minus the DaemonSets."""
    node = allocatable(instance_type)
    return Resources(
        cpu_millicores=node.cpu_millicores - DAEMONSET_CPU_MILLICORES,
        memory_mib=node.memory_mib - DAEMONSET_MEMORY_MIB,
    )
