"""The outside baselines of node_cost.py: other ways to scale the same worker Deployment, run as drivers in
the benchmark's process against a scheduler with no dask_adaptive preload (plain `dask worker`s, Ready
while `/health` answers), under the same cluster-autoscaler stand-in and settings as the preload.

- `operator`: what the dask-kubernetes operator's autoscaler does, read from dask/dask-kubernetes
  `dask_kubernetes/operator/controller/controller.py` (commit afa527f8f9dc, the stored master):
  a kopf timer every 5 s (`daskautoscaler_adapt`) asks the scheduler for `adaptive_target()` (HTTP
  `/api/v1/adaptive_target`, else the RPC), clamps it to the autoscaler's minimum and maximum, limits a
  scale-down to a quarter of the current replicas (at least 1) per step, and after any change waits out a
  15 s cooldown (an annotation). The worker group's replica handler then scales DOWN by asking the
  scheduler to `retire_workers(n)` (the scheduler picks, by `workers_to_close`: data moves off them) and
  deleting exactly those workers' Deployments (one per worker there). Here the workers are pods of one
  Deployment, so "exactly those" is: delete the named pods, then lower `replicas` by as many (the
  ReplicaSet sees them terminating and does not replace them once replicas dropped). NB the operator
  does NOT leave the choice of pods to a ReplicaSet.
- `2017`: the original jade-dask method (benchmarks/scale_down_safety.py), driven by distributed's
  Adaptive policy: every interval the scheduler's `adaptive_target()`; up at once; down only after the
  target stayed lower for `wait_count` (3, distributed's default) looks in a row, by
  `retire_workers(n)` and then `replicas -= n`, the ReplicaSet picking which pods die (so a retired
  worker's pod may survive and a busy one go).
The 5 s timer, 15 s cooldown and Adaptive's 1 s interval are EKS-time and compressed like every other
duration, with the preload's own interval as the floor; the target uses the same (compressed)
targetDuration as the preload, so the three ask the scheduler the same question."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from testbed.dask.kube_fixtures import WORKERS

OPERATOR_TIMER_S = 5.0
OPERATOR_COOLDOWN_S = 15.0
OPERATOR_MAX_DOWN_FRACTION = 0.25
ADAPTIVE_INTERVAL_S = 1.0
ADAPTIVE_WAIT_COUNT = 3
PLAIN = ("operator", "2017")


def strip_preloads(worker_dep: dict[str, Any], scheduler_pod: dict[str, Any]) -> None:
    """No dask_adaptive at work: the shipped command lines without `--preload`, workers Ready on
    `/health` (the shipped probe's schedule), the scheduler without the preload's ServiceAccount."""
    (worker,) = worker_dep["spec"]["template"]["spec"]["containers"]
    cmd = worker["command"]
    i = cmd.index("--preload")
    worker["command"] = [*cmd[:i], *cmd[i + 2 :]]
    worker["readinessProbe"]["httpGet"]["path"] = "/health"
    scheduler_pod["spec"].pop("serviceAccountName", None)  # the driver runs here with admin rights
    (scheduler,) = scheduler_pod["spec"]["containers"]
    scheduler["command"] = scheduler["command"][: scheduler["command"].index("--preload")]


def operator_step(current: int, desired: int, minimum: int, maximum: int) -> int:
    """The operator's next replica count (controller.py `daskautoscaler_adapt`), pure."""
    want = min(maximum, max(minimum, desired))
    if current > 0:
        want = max(current - max(1, int(current * OPERATOR_MAX_DOWN_FRACTION)), want)
    return want


class Driver:
    """One of the baselines above, polling in a thread while the workload runs."""

    def __init__(
        self, kind: str, client: Any, rest: Any, ns: str, *, minimum: int, maximum: int, timing: Any
    ) -> None:
        if kind not in PLAIN:
            raise ValueError(f"Driver kind {kind!r}: must be one of {PLAIN}")
        self.kind, self.client, self.rest, self.ns = kind, client, rest, ns
        self.minimum, self.maximum = minimum, maximum
        self.target_duration = timing.target_duration
        base = OPERATOR_TIMER_S if kind == "operator" else ADAPTIVE_INTERVAL_S
        self.interval = max(timing.interval, base / timing.compression)
        self.cooldown = OPERATOR_COOLDOWN_S / timing.compression
        self.retired: set[str] = set()  # worker (= pod) names retired: rerun_causes' "preload" column
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lower = 0  # Adaptive's consecutive looks with a lower target

    def _scale(self) -> str:
        return f"/apis/apps/v1/namespaces/{self.ns}/deployments/{WORKERS}/scale"

    def replicas(self) -> int:
        return int(self.rest.get(self._scale())["spec"].get("replicas", 0))

    def _set(self, n: int) -> None:
        self.rest.patch(self._scale(), {"spec": {"replicas": n}})

    def _retire(self, n: int) -> list[str]:
        info = self.client.retire_workers(n=n, close_workers=True)
        names = [str(v["name"]) for v in info.values()]
        self.retired.update(names)
        return names

    def step(self) -> float:
        """One look; returns how long to wait before the next."""
        current = self.replicas()
        # the scheduler's `adaptive_target` handler: the operator's RPC fallback (its HTTP route runs it too)
        desired = int(
            self.client.sync(self.client.scheduler.adaptive_target, target_duration=self.target_duration)
        )
        if self.kind == "operator":
            want = operator_step(current, desired, self.minimum, self.maximum)
            if want == current:
                return self.interval
            if want > current:
                self._set(want)
            else:
                names = self._retire(current - want)
                for name in names:  # exactly those pods, as the operator deletes those Deployments
                    with contextlib.suppress(Exception):
                        self.rest.delete(f"/api/v1/namespaces/{self.ns}/pods/{name}")
                self._set(current - len(names))
            return max(self.interval, self.cooldown)
        want = min(self.maximum, max(self.minimum, desired))
        if want > current:
            self._lower = 0
            self._set(want)
        elif want < current:
            self._lower += 1
            if self._lower >= ADAPTIVE_WAIT_COUNT:
                self._lower = 0
                names = self._retire(current - want)
                self._set(max(self.minimum, current - len(names)))  # the ReplicaSet picks the pods
        else:
            self._lower = 0
        return self.interval

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception as exc:  # a look that failed (a worker gone mid-call): counted, go on
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                wait = self.interval
            self._stop.wait(wait)

    @contextlib.contextmanager
    def running(self) -> Iterator[Driver]:
        thread = threading.Thread(target=self._loop, name=f"driver-{self.kind}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=30)
            time.sleep(0)
