"""The placement vocabulary: which labels and taints our nodes carry, and the selectors, tolerations and
cluster-autoscaler node-template tags that must match them exactly.

Node groups carry `adaptive-dask/pool=<group>`, and worker groups are tainted
`adaptive-dask/dask-worker=true:NoSchedule`, so nothing but Dask workers lands on autoscaled nodes (a
stray pod there would block scale-down). The AWS layer labels and taints nodes with these facts, the
Kubernetes layer selects and tolerates with them, and the ASG tags describe them to cluster-autoscaler.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

POOL_LABEL = "adaptive-dask/pool"
SYSTEM_POOL = "system"
CAPACITY_TYPE_LABEL = "eks.amazonaws.com/capacityType"  # set on every node by EKS itself
# cluster-autoscaler learns a zero-node group's labels and taints from ASG tags named
# `<NODE_TEMPLATE>/label/<key>` and `<NODE_TEMPLATE>/taint/<key>`; ASG tag keys are at most 128 characters.
NODE_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"
ASG_TAG_KEY_MAX = 128
MAX_NODE_TEMPLATE_KEY = ASG_TAG_KEY_MAX - len(f"{NODE_TEMPLATE}/label/")


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_label_key(key: str) -> bool:
    """Kubernetes label key syntax: `[prefix/]name`, name <= 63 characters, prefix a DNS subdomain <= 253."""
    prefix, _, name = key.rpartition("/")
    return bool(_LABEL_NAME.match(name)) and (
        not prefix or (len(prefix) <= 253 and bool(_DNS_SUBDOMAIN.match(prefix)))
    )


def is_label_value(value: str) -> bool:
    """Kubernetes label value syntax: empty, or <= 63 alphanumerics, '-', '_', '.' (alphanumeric ends)."""
    return not value or bool(_LABEL_NAME.match(value))


@dataclass(frozen=True)
class Taint:
    key: str
    value: str | None  # None: tolerated with `Exists`
    effect: str  # Kubernetes spelling: NoSchedule | PreferNoSchedule | NoExecute


WORKER_TAINT = Taint("adaptive-dask/dask-worker", "true", "NoSchedule")


def system_labels() -> dict[str, str]:
    return {POOL_LABEL: SYSTEM_POOL}


def worker_labels(pool: str, configured: Mapping[str, str]) -> dict[str, str]:
    """A worker group's configured labels plus the pool label the Dask worker pods select on."""
    return {**configured, POOL_LABEL: pool}


def worker_taints(configured: Sequence[Taint]) -> tuple[Taint, ...]:
    """The Dask-worker taint first (only Dask workers tolerate it), then the configured ones."""
    return (WORKER_TAINT, *configured)


def tolerations(taints: Sequence[Taint]) -> list[dict]:
    """Tolerations matching the given taints exactly (key, value, effect), without duplicates."""
    out: list[dict] = []
    for taint in dict.fromkeys(taints):
        item: dict = {"key": taint.key, "effect": taint.effect}
        if taint.value is None:
            item["operator"] = "Exists"
        else:
            item.update(operator="Equal", value=taint.value)
        out.append(item)
    return out


def pool_placement(pools: Sequence[str]) -> dict:
    """Pod-spec fragment pinning pods to the given pools: a nodeSelector for one, node affinity for many."""
    unique = list(dict.fromkeys(pools))
    if not unique:
        return {}
    if len(unique) == 1:
        return {"nodeSelector": {POOL_LABEL: unique[0]}}
    term = {"matchExpressions": [{"key": POOL_LABEL, "operator": "In", "values": unique}]}
    return {
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
        }
    }


# Pod priorities around cluster-autoscaler: pods below its `--expendable-pods-priority-cutoff` neither make
# it add nodes nor keep nodes alive. Pinned at CA's default, with the headroom placeholders just above it
# and below the workers (0): preempted by any worker, yet still worth a node (infra/k8s/headroom.py).
EXPENDABLE_PRIORITY_CUTOFF = -10
HEADROOM_PRIORITY = -1
