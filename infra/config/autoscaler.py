"""`adaptive-dask:autoscaler`: cluster-autoscaler's flags, validated as its own flag parser would, and the
expander choice. Only the aws target has a cluster-autoscaler."""

from __future__ import annotations

from typing import Any

from infra.config.reader import PROJECT, Field, Section
from infra.config.settings import AutoscalerSettings, AwsConfig
from infra.errors import ConfigError
from infra.facts.placement import EXPENDABLE_PRIORITY_CUTOFF
from infra.facts.versions import CA_IMAGE_TAGS, kubernetes_minor

EXPANDERS = ("auto", "least-waste", "priority,least-waste", "random", "most-pods", "least-nodes", "priority")
AUTOSCALER_DEFAULTS: dict[str, Any] = {
    # Short, because the preload has already waited: its workers go after `dask.scaleDownDelay` (60 s) and
    # it empties whole nodes first (issue 13), so an empty worker node is one nobody wanted for a minute.
    # Another minute here makes a node idle ~2 min before it goes: about the bill of booting it again
    # (~90 s), the break-even of keep-or-release. 5m (the value before) billed ~6 idle minutes per node.
    # CA's own default is 10m; this key accepts 1m-24h.
    "scaleDownUnneededTime": "1m",
    "scaleDownDelayAfterAdd": "5m",
    "maxNodeProvisionTime": "10m",
    "expander": "auto",
    "balanceSimilarNodeGroups": True,
    "skipNodesWithLocalStorage": False,
    "skipNodesWithSystemPods": False,
    "scaleDownUtilizationThreshold": "0.5",
}


def choose_expander(configured: str, capacity_types: list[str]) -> str:
    """`auto`: prefer spot through the priority expander only when there is a choice to make."""
    if configured != "auto":
        return configured
    return "priority,least-waste" if {"SPOT", "ON_DEMAND"} <= set(capacity_types) else "least-waste"


def _fraction(field: Field) -> str:
    try:
        value = float(str(field.value))
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise field.fail(
            "must be a number in (0, 1], e.g. 0.5 (a node's requested share below which CA may drain it)"
        )
    return f"{value:g}"


def parse_autoscaler(s: Section, *, aws: AwsConfig) -> AutoscalerSettings:
    """`adaptive-dask:autoscaler`: cluster-autoscaler flags, validated as the flags' own parser would."""
    version_key = f"{PROJECT}:cluster.version"
    try:
        minor = kubernetes_minor(aws.cluster.version)
    except ValueError:
        minor = None
    if minor not in CA_IMAGE_TAGS:
        raise ConfigError(
            version_key,
            aws.cluster.version,
            "cluster-autoscaler must match the Kubernetes minor; supported: " + ", ".join(CA_IMAGE_TAGS),
        )
    resolved = choose_expander(s["expander"].choice(EXPANDERS), [g.capacity_type for g in aws.workers])
    flags = {
        "scale-down-unneeded-time": s["scaleDownUnneededTime"].go_duration(60, 86_400),
        "scale-down-delay-after-add": s["scaleDownDelayAfterAdd"].go_duration(0, 86_400),
        "max-node-provision-time": s["maxNodeProvisionTime"].go_duration(60, 3600),
        "expander": resolved,
        "balance-similar-node-groups": str(s["balanceSimilarNodeGroups"].boolean()).lower(),
        "skip-nodes-with-local-storage": str(s["skipNodesWithLocalStorage"].boolean()).lower(),
        "skip-nodes-with-system-pods": str(s["skipNodesWithSystemPods"].boolean()).lower(),
        "scale-down-utilization-threshold": _fraction(s["scaleDownUtilizationThreshold"]),
        # pinned at CA's default: headroom placeholders stay above it (infra/facts/placement.py)
        "expendable-pods-priority-cutoff": str(EXPENDABLE_PRIORITY_CUTOFF),
    }
    return AutoscalerSettings(kubernetes_version=minor, expander=resolved, flags=flags)
