"""A backend the controller tests script: units are what the test says, scale and remove calls are recorded,
and observe / remove fail on demand (`fail_observe`, `fail_remove`); `running(*names)` makes running units."""

from __future__ import annotations

from dask_adaptive.backends.base import BackendError, Observation, Phase, RemovalReport, Unit


class ScriptedBackend:
    def __init__(self, *units: Unit) -> None:
        self.units = {u.name: u for u in units}
        self.requested = len(units)
        self.removed: list[list[str]] = []
        self.scaled: list[int] = []
        self.fail_observe = False
        self.fail_remove = 0

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def observe(self) -> Observation:
        if self.fail_observe:
            raise BackendError("API unreachable")
        return Observation(self.requested, tuple(self.units.values()))

    async def scale_up(self, n: int) -> None:
        self.scaled.append(n)
        self.requested = n

    async def remove(self, names: list[str]) -> RemovalReport:
        if self.fail_remove:
            self.fail_remove -= 1
            raise BackendError("API 503")
        self.removed.append(list(names))
        for name in names:
            self.units.pop(name, None)
        self.requested -= len(names)
        return RemovalReport(tuple(names))

    async def record(self, reason: str, message: str) -> None: ...


def running(*names: str) -> list[Unit]:
    return [Unit(n, Phase.RUNNING, True) for n in names]
