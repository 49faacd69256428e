"""Warm headroom and scheduled minimums in the program (issue 13 §2), offline.

The placeholders must be exactly worker-sized and worker-placed (or the room they hold is the wrong room),
preemptible by workers, still worth a node to cluster-autoscaler, inside the namespace's budget, and
invisible to the preload (their labels are not the worker selector).
"""

from __future__ import annotations

import json

import pytest

from infra.errors import ConfigError
from infra.facts.placement import EXPENDABLE_PRIORITY_CUTOFF
from infra.k8s import guards, headroom
from testbed.infra import builders
from testbed.infra.harness import Graph
from tests.infra.pod_security import restricted_violations
from tests.infra.schema import schema_errors

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
PRIORITY_CLASS = "kubernetes:scheduling.k8s.io/v1:PriorityClass"


def dask_overrides(**keys: object) -> dict[str, str]:
    return {"adaptive-dask:dask": json.dumps(keys)}


def deployment(g: Graph, component: str) -> dict:
    [node] = [
        n
        for n in g.of_type(DEPLOYMENT)
        if n.inputs["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return node.inputs


def test_no_headroom_by_default(stack_graph):
    for stack in ("dev", "prod", "local"):
        g = stack_graph(stack)
        assert [deployment(g, c)["metadata"]["name"] for c in ("scheduler", "worker")]
        with pytest.raises(ValueError):
            deployment(g, "headroom")
        assert [n for n in g.of_type(PRIORITY_CLASS) if "headroom" in n.name] == []


def test_placeholders_hold_worker_sized_room_where_workers_run(stack_graph):
    g = stack_graph("dev", overrides=dask_overrides(headroomWorkers=2))
    held, worker = deployment(g, "headroom"), deployment(g, "worker")
    assert held["spec"]["replicas"] == 2
    hspec, wspec = held["spec"]["template"]["spec"], worker["spec"]["template"]["spec"]
    [pause], [dask] = hspec["containers"], wspec["containers"]
    assert pause["resources"] == dask["resources"]  # requests == limits, exactly a worker's
    assert hspec["nodeSelector"] == wspec["nodeSelector"] and hspec["tolerations"] == wspec["tolerations"]
    # placeholders keep together (whole nodes of room), workers keep together: neither prefers the other
    [held_term] = hspec["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    [work_term] = wspec["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    held_labels = held["spec"]["template"]["metadata"]["labels"]
    selects = held_term["podAffinityTerm"]["labelSelector"]["matchLabels"]
    assert all(held_labels[k] == v for k, v in selects.items())
    assert held_term["podAffinityTerm"]["topologyKey"] == work_term["podAffinityTerm"]["topologyKey"]
    assert pause["image"] == headroom.PAUSE_IMAGE and "command" not in pause
    assert hspec["automountServiceAccountToken"] is False
    # invisible to the preload: the worker selector does not match a placeholder
    selector = worker["spec"]["selector"]["matchLabels"]
    labels = held["spec"]["template"]["metadata"]["labels"]
    assert any(labels.get(k) != v for k, v in selector.items())
    assert restricted_violations(hspec) == []
    for manifest in (held, *(n.inputs for n in g.of_type(PRIORITY_CLASS))):
        assert (
            schema_errors(
                {"apiVersion": "v1", **manifest} if "apiVersion" not in manifest else manifest, "1.33"
            )
            == []
        )


def test_placeholders_yield_to_workers_yet_still_buy_nodes(stack_graph):
    g = stack_graph("dev", overrides=dask_overrides(headroomWorkers=1))
    [pc] = [n.inputs for n in g.of_type(PRIORITY_CLASS) if "headroom" in n.name]
    spec = deployment(g, "headroom")["spec"]["template"]["spec"]
    assert spec["priorityClassName"] == pc["metadata"]["name"]
    assert EXPENDABLE_PRIORITY_CUTOFF <= pc["value"] < 0  # below workers (0), not expendable to CA
    assert pc["preemptionPolicy"] == "Never" and pc["globalDefault"] is False
    # the flag CA runs with is the cutoff the priority was chosen against
    [release] = g.of_type("kubernetes:helm.sh/v3:Release")
    assert release.inputs["values"]["extraArgs"]["expendable-pods-priority-cutoff"] == str(
        EXPENDABLE_PRIORITY_CUTOFF
    )


def test_the_quota_reserves_the_placeholders_share():
    cluster = builders.aws((builders.group("spot", ("m6i.2xlarge",), "SPOT", 10),))
    plain = guards.quota_budget(builders.dask({"maxWorkers": 6}, cluster=cluster))
    held = guards.quota_budget(builders.dask({"maxWorkers": 6, "headroomWorkers": 2}, cluster=cluster))
    settings = builders.dask({"maxWorkers": 6}, cluster=cluster)
    assert held.pods - plain.pods == 2
    assert held.cpu_millicores - plain.cpu_millicores == 2 * settings.worker.cpu_millicores
    assert held.memory_mib - plain.memory_mib == 2 * settings.worker.memory_mib


@pytest.mark.parametrize("raw", [{"headroomWorkers": -1}, {"headroomWorkers": 5, "maxWorkers": 4}])
def test_headroom_bounds(raw):
    with pytest.raises(ConfigError) as caught:
        builders.dask(raw, target="local")
    assert caught.value.key == "adaptive-dask:dask.headroomWorkers"


# ---------------------------------------------------------------- scheduled minimums


def test_minimum_schedule_reaches_the_preload(stack_graph):
    g = stack_graph(
        "local", overrides=dask_overrides(minWorkersSchedule="Mon-Fri 08:00-18:00 Europe/London=2")
    )
    command = deployment(g, "scheduler")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--min-workers-schedule") + 1] == "Mon-Fri 08:00-18:00 Europe/London=2"
    assert (
        "--min-workers-schedule"
        not in deployment(stack_graph("local"), "scheduler")["spec"]["template"]["spec"]["containers"][0][
            "command"
        ]
    )


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ("Mon-Fri 08:00-18:00 Mars/Olympus=2", "Mars/Olympus"),
        ("Mon-Fri 8-18 UTC=2", "HH:MM"),
        ("Mon-Fri 08:00-18:00 UTC=9", "maxWorkers (4)"),
    ],
)
def test_bad_schedules_fail_at_preview_naming_the_key(schedule, why):
    with pytest.raises(ConfigError) as caught:
        builders.dask({"minWorkersSchedule": schedule}, target="local")
    assert caught.value.key == "adaptive-dask:dask.minWorkersSchedule"
    assert why in str(caught.value)
