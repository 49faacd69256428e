"""The allocatable table: EKS AMI reservations, worked from the published formulas and real nodes."""

from __future__ import annotations

import itertools

import pytest

from infra.facts import instance_types as it


@pytest.mark.parametrize(
    ("vcpus", "reserved"),
    [
        # 6% of core 1 = 60m, 1% of core 2 = 10m, 0.5% of cores 3-4 = 10m, 0.25% of each further core
        (1, 60),
        (2, 70),
        (4, 80),
        (8, 80 + 4 * 2.5),
        (16, 80 + 12 * 2.5),
        (32, 80 + 28 * 2.5),
    ],
)
def test_kube_reserved_cpu_follows_the_eks_bands(vcpus, reserved):
    assert it.kube_reserved_cpu_millicores(vcpus) == int(reserved)


def test_allocatable_cpu_matches_what_eks_nodes_report():
    # `kubectl get node -o jsonpath={.status.allocatable.cpu}` on EKS AL2023 nodes of 2/4/8 vCPUs
    assert it.allocatable("m5.large").cpu_millicores == 1930
    assert it.allocatable("m6i.xlarge").cpu_millicores == 3920
    assert it.allocatable("m6i.2xlarge").cpu_millicores == 7910


@pytest.mark.parametrize(("max_pods", "reserved"), [(17, 442), (29, 574), (58, 893), (234, 2829)])
def test_kube_reserved_memory_grows_with_pod_density(max_pods, reserved):
    assert it.kube_reserved_memory_mib(max_pods) == reserved


def test_allocatable_memory_is_conservative_against_a_real_node():
    # An m5.large (8 GiB nominal, 29 max pods) reports capacity 7934440Ki and allocatable about
    # 7244264Ki (= capacity - 574Mi kube-reserved - 100Mi eviction). Our estimate must never be above
    # it (pods sized above allocatable stay Pending forever) and not waste more than ~5%.
    observed_allocatable_mib = 7244264 // 1024
    estimate = it.allocatable("m5.large").memory_mib
    assert estimate <= observed_allocatable_mib
    assert estimate >= observed_allocatable_mib * 0.95


def test_pod_capacity_leaves_room_for_the_daemonsets():
    node, pods = it.allocatable("m6i.xlarge"), it.pod_capacity("m6i.xlarge")
    # aws-node (25m) + kube-proxy (100m) requests must still fit next to a worker filling the node
    assert node.cpu_millicores - pods.cpu_millicores >= 125
    assert node.memory_mib - pods.memory_mib > 0


def test_bigger_instances_of_a_family_never_give_less():
    for family in ("m6i", "c6i", "r6i", "t3"):
        sizes = sorted(
            (s for s in it.INSTANCE_TYPES.values() if s.name.startswith(f"{family}.")),
            key=lambda s: s.vcpus * 1000 + s.memory_gib,
        )
        caps = [it.pod_capacity(s.name) for s in sizes]
        assert all(a.cpu_millicores <= b.cpu_millicores for a, b in itertools.pairwise(caps))
        assert all(a.memory_mib <= b.memory_mib for a, b in itertools.pairwise(caps))


def test_table_max_pods_follow_the_eni_formula_for_known_shapes():
    # ENIs x (IPv4 per ENI - 1) + 2 from the EC2 ENI limits of each shape
    eni_limits = {"m5.large": (3, 10), "m5.xlarge": (4, 15), "m5.4xlarge": (8, 30), "t3.medium": (3, 6)}
    for name, (enis, ips) in eni_limits.items():
        assert it.INSTANCE_TYPES[name].max_pods == enis * (ips - 1) + 2


def test_memory_and_cpu_of_every_type_leave_positive_pod_capacity():
    for name in it.INSTANCE_TYPES:
        cap = it.pod_capacity(name)
        assert cap.cpu_millicores > 0 and cap.memory_mib > 0, name
