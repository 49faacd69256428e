"""cluster-autoscaler's scale-down-unneeded-time as a curve against the gap between bursts: a SIMULATION.

Running every (unneeded time, gap) pair on the control plane - gaps up to 30 min EKS time, 5 repeats -
would take hours, so this replays what the control plane recorded instead: the worker replicas the
preload asked for over one cold burst of the `packed` contender (its Deployment's spec.replicas, 10 looks
a second), and lays that burst out again and again with a given gap. The nodes follow the stand-in's own
rules for a packed group (testbed/kube/provisioner.py, the bill by its `node_seconds`): nodes needed =
ceil(replicas / workersPerNode); pods waiting longer than the CA reaction get nodes, which join after the
boot; a node beyond the need is empty (packing) and goes after the unneeded time, never within
scale-down-delay-after-add of the last scale-up. A burst that finds a node up starts its first worker
after the measured pod start alone, and its recorded curve is replayed from that moment on (a warm burst
finishes sooner); a cold one after the reaction, the boot and the pod start.
What it leaves out: drains of part-used nodes (a packed group has none to speak of: see the real runs'
"nodes drained by CA" column) and the scheduler's own variation. Its check: the same simulation at the
real runs' gap and unneeded time against their measured node-seconds (printed as sim / real)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from _common import Tee, table

from testbed.kube.provisioner import Launch, node_seconds

STEP = 0.05  # simulation step, benchmark seconds
ASSUMED_EKS_POD_START_S = 20.0  # a second table's pod start (EKS seconds): an assumption, labelled so


@dataclass(frozen=True)
class Curve:
    """One recorded burst: (seconds since submit, replicas asked for) and when they were back to base."""

    points: tuple[tuple[float, int], ...]
    length: float  # submit -> replicas back at the baseline
    first_request: float  # submit -> replicas first raised
    first_worker: float  # submit -> first worker joined (cold)

    def at(self, tau: float) -> int:
        """Replicas asked for `tau` after the submit; the baseline (0) from `length` on."""
        if tau >= self.length:
            return 0
        value = 0
        for t, r in self.points:
            if t > tau:
                break
            value = r
        return value


def burst_curve(
    replicas: Sequence[tuple[float, int]],
    submit: float,
    end: float,
    first_worker: float,
    done: float,
    release: float,
    base: int = 0,
) -> Curve | None:
    """One burst from a run's replica looks (seconds on the run's clock) between its `submit` and `end`
    (the next submit). If the replicas were not back at `base` by then (the next burst came first), the
    burst is cut where its tasks were `done` (makespan after the submit) and its workers are taken as
    released `release` later (the preload's scaleDownDelay): a reconstruction, said so in the output."""
    pts = tuple((t - submit, r) for t, r in replicas if submit <= t < end)
    raised = [t for t, r in pts if r > base]
    if not raised:
        return None
    back = [t for t, r in pts if t > raised[0] and r <= base]
    if back:
        return Curve(pts, back[0], raised[0], first_worker)
    cut = tuple((t, r) for t, r in pts if t <= done)
    return Curve(cut, done + release, raised[0], first_worker)


@dataclass(frozen=True)
class Setting:
    boot: float
    reaction: float
    unneeded: float
    after_add: float
    pod_start: float
    workers_per_node: int


def simulate(curve: Curve, gap: float, bursts: int, s: Setting) -> tuple[float, list[float]]:
    """(node-seconds over the whole series, first-worker latency per burst), benchmark seconds. Each
    burst is submitted `gap` after the previous one's replayed demand ended."""
    launches: list[Launch] = []
    waiting_since: float | None = None
    last_up = -math.inf
    empty_since: dict[str, float] = {}
    submits = [0.0]  # per burst: its submit (sim clock); the next is appended when one ends
    starts: list[float | None] = []  # per burst: when its first worker started
    horizon = math.inf
    t = 0.0
    while t < horizon:
        b = len(submits) - 1
        if len(starts) < len(submits):
            starts.append(None)
        tau = t - submits[b]
        up = [n for n in launches if n.joined is not None and n.joined <= t and n.removed is None]
        booting = [n for n in launches if n.removed is None and (n.joined is None or n.joined > t)]
        for n in booting:
            if n.launched + s.boot <= t:
                n.joined = n.launched + s.boot
        if tau >= curve.first_request and starts[b] is None and up:
            starts[b] = max(t, submits[b] + curve.first_request) + s.pod_start
        start = starts[b]
        if tau < 0:
            want = 0  # the gap
        elif start is None:
            want = curve.at(min(tau, curve.first_worker))
        else:  # replay the recorded burst from its first worker on, however early that came
            replay = curve.first_worker + (t - start)
            want = curve.at(replay) if t >= start else curve.at(curve.first_worker)
            if replay >= curve.length and math.isinf(horizon):
                if len(submits) < bursts:
                    submits.append(t + gap)
                else:
                    horizon = t + s.unneeded + s.after_add + s.boot
        need = math.ceil(want / s.workers_per_node)
        have = len(up) + len(booting)
        if need > have:
            waiting_since = t if waiting_since is None else waiting_since
            if t - waiting_since >= s.reaction:
                for _ in range(need - have):
                    launches.append(Launch(f"n{len(launches)}", "w", t))
                last_up, waiting_since = t, None
        else:
            waiting_since = None
        spare = sorted(up, key=lambda n: n.launched)[need:] if len(up) > need else []
        for n in up:
            if n in spare:
                since = empty_since.setdefault(n.name, t)
                if t - since >= s.unneeded and t - last_up >= s.after_add:
                    n.removed = t
            else:
                empty_since.pop(n.name, None)
        t += STEP
    latency = [(st - sub) if st is not None else math.nan for sub, st in zip(submits, starts, strict=True)]
    return node_seconds(launches, 0.0, horizon), latency


def curve_table(
    curves: Sequence[Curve],
    unneeded_eks: Sequence[float],
    gaps_eks: Sequence[float],
    base: Setting,
    compression: float,
    bursts: int = 6,
) -> list[list[str]]:
    """Rows per unneeded time: for each gap, node-minutes per burst and the median first-worker latency
    from the 2nd burst on (EKS units; median over the recorded curves)."""
    rows = []
    for u in unneeded_eks:
        s = Setting(**{**base.__dict__, "unneeded": u / compression})
        row = [f"{u / 60:g} min"]
        for g in gaps_eks:
            cost, lat = [], []
            for c in curves:
                ns, latency = simulate(c, g / compression, bursts, s)
                cost.append(ns * compression / 60 / bursts)
                lat.extend(x * compression for x in latency[1:] if not math.isnan(x))
            row.append(f"{statistics.median(cost):.1f} / {statistics.median(lat):.0f}" if lat else "-")
        rows.append(row)
    return rows


def curve_section(runs: list[Any], scenario: Any, timing: Any, out: Tee) -> None:
    """The scaleDownUnneededTime curve: SIMULATED on the packed runs' recorded first bursts (ca_curve.py)."""
    curves = []
    for r in runs:
        if r.contender != "packed" or r.scenario != scenario.name or len(r.submits) < 2:
            continue
        b = r.bursts[0]
        if b.first_worker is None or b.workers_at_submit:
            continue
        if b.makespan is None:
            continue
        c = burst_curve(
            r.replicas, r.submits[0], r.submits[1], b.first_worker, b.makespan, timing.scale_down_delay
        )
        if c is not None:
            curves.append((r, c))
    if not curves:
        out("\n(no scaleDownUnneededTime curve: no packed run with a cold first burst and a second burst)")
        return
    cut = sum(1 for r, c in curves if not any(t > c.first_request and v <= 0 for t, v in c.points))
    pod_start = statistics.median(
        max(0.0, c.first_worker - c.first_request - timing.reaction - timing.boot) for _, c in curves
    )
    base = Setting(
        timing.boot, timing.reaction, timing.unneeded, timing.after_add, pod_start, scenario.workers_per_node
    )
    f = timing.compression
    out(
        "\n### scaleDownUnneededTime against the gap between bursts  [SIMULATION, not the control plane]\n\n"
        f"Replays the packed contender's recorded first burst ({len(curves)} repeat(s)) under the stand-in's"
        f" rules for a packed group (ca_curve.py); EKS units; pod start {pod_start * f:.0f} s (measured),"
        f" boot {timing.boot * f:.0f} s, CA reaction {timing.reaction * f:.0f} s, delay-after-add"
        f" {timing.after_add * f:.0f} s; 6 bursts, cells: node-minutes per burst / first-worker latency s"
        f" (median, bursts 2-6). {cut} of the recorded bursts overlapped the next one; those are cut where"
        " their tasks were done and released a scaleDownDelay later (a reconstruction)\n"
    )
    gaps = [60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0]
    rows = curve_table([c for _, c in curves], [60.0, 120.0, 300.0, 600.0], gaps, base, f)
    out(table(["unneeded \\ gap", *(f"{g / 60:g} min" for g in gaps)], rows))
    eks = Setting(**{**base.__dict__, "pod_start": ASSUMED_EKS_POD_START_S / f})
    out(
        f"\nThe same with an ASSUMED pod start of {ASSUMED_EKS_POD_START_S:g} s (an image already on the"
        " node; this machine's pod start above is its load, not EKS's - only EKS can confirm):\n"
    )
    out(
        table(
            ["unneeded \\ gap", *(f"{g / 60:g} min" for g in gaps)],
            curve_table([c for _, c in curves], [60.0, 120.0, 300.0, 600.0], gaps, eks, f),
        )
    )
    checks = []
    for r, c in curves:
        gap = max(0.0, r.submits[1] - r.submits[0] - c.length)  # the real runs': none if they overlapped
        sim, _ = simulate(c, gap, len(r.submits), base)
        checks.append(sim / r.node_seconds)
    out(
        f"check - the simulation at the real runs' own gap and unneeded time against their measured"
        f" node-seconds (sim / real, per repeat): {' '.join(f'{x:.2f}' for x in checks)}"
    )
