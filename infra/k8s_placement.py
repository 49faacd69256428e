"""Where pods land: node labels/taints of our node groups turned into selectors and tolerations.

The node groups (issue 2) carry `adaptive-dask/pool=<group>` and worker groups are tainted
`adaptive-dask/dask-worker=true:NoSchedule`, so nothing but Dask workers lands on autoscaled nodes (a
stray pod there would block scale-down). These functions mirror those facts exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

POOL_LABEL = "adaptive-dask/pool"
SYSTEM_POOL = "system"
WORKER_TAINT_KEY = "adaptive-dask/dask-worker"
WORKER_TAINT_VALUE = "true"
WORKER_TAINT_EFFECT = "NoSchedule"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str | None
    effect: str


WORKER_TAINT = Taint(WORKER_TAINT_KEY, WORKER_TAINT_VALUE, WORKER_TAINT_EFFECT)


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
