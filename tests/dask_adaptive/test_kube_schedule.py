"""Scheduled minimums (`dask.minWorkersSchedule`, dask_adaptive/schedule.py) end to end on the REAL
Kubernetes 1.20.2 control plane.

The stack is recorded with the Pulumi program's own builders and a `minWorkersSchedule` stack-config override
(so the program's preview-time validation and its scheduler command line are what runs), applied with
the kubelet harness, and the scheduler's preload alone must scale the idle worker Deployment: no work is
ever submitted, so the only reason for a worker is the window in force.

The windows are computed from the current time by the wall clock of Asia/Kolkata (UTC+05:30, no daylight
saving time): a window from one hour before now to one hour after, on the weekday it starts (an end
before the start runs overnight and belongs to that day, so this holds near midnight and on every
weekday). Two decoys that exclude now ask for MORE workers, so a controller that ignored the days or the
zone would overshoot: the same hours on the six other days, and the same hours read as UTC (5.5 hours
away from now).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dask_adaptive.schedule import DAYS, active_windows, parse_schedule
from testbed.dask.kube_driver import PodWatch, deploy_dask, live_pods, stack_client
from testbed.dask.kube_fixtures import SCHEDULER, WORKERS, dask_layer
from testbed.kube.control_plane import wait_for

ZONE = "Asia/Kolkata"
SCHEDULED = 2  # the window in force asks for this many workers; minWorkers is 0
# Fast looks and a short scale-down delay: idle workers above the minimum would be retired within a
# second, so workers that stay are held by the schedule. maxWorkers leaves room for the decoys' counts.
FAST = {"minWorkers": 0, "maxWorkers": 4, "interval": 0.25, "targetDuration": 1, "scaleDownDelay": 0.5}
HOLD = 3.0  # seconds (12 looks) the Deployment must stay where the schedule puts it


def windows_around(now: datetime) -> tuple[str, list[str]]:
    """(the window in force at `now`, decoys that are not), each in the schedule grammar."""
    local = now.astimezone(ZoneInfo(ZONE))
    start = (local - timedelta(hours=1)).replace(second=0, microsecond=0)
    hours = f"{start:%H:%M}-{start + timedelta(hours=2):%H:%M}"
    day = start.weekday()
    others = ",".join(DAYS[d].title() for d in range(7) if d != day)
    in_force = f"{DAYS[day].title()} {hours} {ZONE}={SCHEDULED}"
    return in_force, [f"{others} {hours} {ZONE}={SCHEDULED + 1}", f"{hours} UTC={SCHEDULED + 2}"]


def deployment_replicas(kube: Any, ns: str) -> int:
    scale = kube.rest().get(f"/apis/apps/v1/namespaces/{ns}/deployments/{WORKERS}/scale")
    return scale["spec"].get("replicas", 0)


def deployment_events(kube: Any, ns: str) -> list[dict[str, Any]]:
    """The preload's Kubernetes Events on the worker Deployment (created with the scheduler's token)."""
    return [
        e
        for e in kube.rest().items(f"/api/v1/namespaces/{ns}/events")
        if e.get("source", {}).get("component") == "dask-adaptive"
        and (e["involvedObject"]["kind"], e["involvedObject"]["name"]) == ("Deployment", WORKERS)
    ]


def shipped_schedule(layer: Any) -> str:
    """The `--min-workers-schedule` value on the scheduler command line the program builds."""
    (container,) = layer.stack.find("Deployment", SCHEDULER)["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    return command[command.index("--min-workers-schedule") + 1]


def premise(schedule: str, expected: list[str]) -> None:
    """The test's own premise, by the preload's parser: exactly `expected` windows are in force now."""
    active = [w.text for w in active_windows(parse_schedule(schedule), datetime.now(UTC))]
    assert active == expected, f"clock premise broken: {active} in force, wanted {expected}"


def test_the_windows_are_in_force_or_not_at_any_time_of_the_week() -> None:
    """The premise of the tests below, for every weekday and across midnight (in Kolkata and in UTC),
    by the preload's parser: the window is in force from `now` to well after the test, the decoys never.
    Steps of 7 minutes over a week meet every minute of the day once, on changing weekdays."""
    monday = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday; Kolkata has had no clock change since 1945
    for minute in range(0, 7 * 24 * 60, 7):
        now = monday + timedelta(minutes=minute, seconds=59)
        in_force, decoys = windows_around(now)
        schedule = parse_schedule("; ".join([in_force, *decoys]))
        for later in (now, now + timedelta(minutes=5)):
            assert [w.text for w in active_windows(schedule, later)] == [in_force], (now, later)


@pytest.mark.kube
def test_a_window_in_force_scales_the_idle_deployment_to_its_minimum(
    kube: Any, namespace: str, kubelet_factory: Callable[..., Any]
) -> None:
    in_force, decoys = windows_around(datetime.now(UTC))
    schedule = "; ".join([in_force, *decoys])
    premise(schedule, [in_force])
    layer = dask_layer(namespace, minWorkersSchedule=schedule, **FAST)
    assert shipped_schedule(layer) == schedule  # validated and shipped by the program as written
    kubelet = kubelet_factory(probe_period_scale=0.5)
    deploy_dask(kube, namespace, layer=layer, nanny=False)
    started = time.monotonic()
    with (
        PodWatch(kube, namespace).running() as watch,
        stack_client(kube, kubelet, namespace) as client,
    ):
        assert client.scheduler.address.startswith("tls://")  # mutual TLS, as shipped

        def joined() -> set[str] | None:
            workers = {w["name"] for w in client.scheduler_info()["workers"].values()}
            return workers if len(workers) == SCHEDULED else None

        workers = wait_for(joined, 60, message=f"{SCHEDULED} workers joined for the window")
        reached = time.monotonic() - started
        seen: set[tuple[int, int, int]] = set()  # (replicas, live pods, workers) at each look
        deadline = time.monotonic() + HOLD
        while time.monotonic() < deadline:
            seen.add(
                (
                    deployment_replicas(kube, namespace),
                    len(live_pods(kube, namespace)),
                    len(client.scheduler_info()["workers"]),
                )
            )
            time.sleep(0.2)
        pods = {p["metadata"]["name"] for p in live_pods(kube, namespace)}
        events = [msg for _, msg in client.get_events("adaptive")]
        tasks = len(client.who_has())
    log = kubelet.log_text(namespace, SCHEDULER)
    premise(schedule, [in_force])  # still the same window at the end: nothing above raced the clock
    print(
        f"\nschedule: {SCHEDULED} workers {reached:.1f}s after the scheduler pod was applied, held {HOLD:g}s"
    )
    assert tasks == 0  # no work: the window is the only reason for a worker
    assert seen == {(SCHEDULED, SCHEDULED, SCHEDULED)}, seen  # exactly the window's minimum, held
    assert workers == pods == watch.seen  # the workers are these pods, and no other pod ever existed
    cause = f"min-workers-schedule {in_force}"
    minimums = [(m["minimum"], m["by"]) for m in events if m["action"] == "minimum"]
    assert minimums == [(SCHEDULED, cause)], minimums  # raised once, by this window (not a decoy)
    scale_ups = [m["reason"] for m in events if m["action"] == "ScaleUp"]
    assert scale_ups and all(f"to minimum {SCHEDULED} ({cause})" in r for r in scale_ups), scale_ups
    assert f'event=minimum minimum={SCHEDULED} was=0 by="{cause}"' in log, log[-3000:]
    messages = [e["message"] for e in deployment_events(kube, namespace) if e["reason"] == "ScaleUp"]
    assert messages and all(cause in m for m in messages), messages  # `kubectl describe` names it too


@pytest.mark.kube
def test_windows_not_in_force_leave_the_idle_deployment_at_zero(
    kube: Any, namespace: str, kubelet_factory: Callable[..., Any]
) -> None:
    _, decoys = windows_around(datetime.now(UTC))
    schedule = "; ".join(decoys)
    premise(schedule, [])
    layer = dask_layer(namespace, minWorkersSchedule=schedule, **FAST)
    assert shipped_schedule(layer) == schedule
    kubelet = kubelet_factory(probe_period_scale=0.5)
    deploy_dask(kube, namespace, layer=layer, nanny=False)
    with stack_client(kube, kubelet, namespace) as client:
        # the controller's first look is logged once it has run (a Hold at target 0)
        wait_for(
            lambda: "decision=Hold" in kubelet.log_text(namespace, SCHEDULER),
            30,
            message="the controller's first look",
        )
        looked = time.monotonic()
        states: set[tuple[int, int]] = set()  # (replicas, live pods) at each look
        while time.monotonic() < looked + HOLD:
            states.add((deployment_replicas(kube, namespace), len(live_pods(kube, namespace))))
            time.sleep(0.2)
        workers = client.scheduler_info()["workers"]
        minimums = [msg for _, msg in client.get_events("adaptive") if msg["action"] == "minimum"]
    log = kubelet.log_text(namespace, SCHEDULER)
    premise(schedule, [])
    assert states == {(0, 0)}, states  # a window not in force asks for nothing, for 12 looks
    assert not workers and not minimums, (workers, minimums)
    assert "event=minimum" not in log  # the minimum was never raised
