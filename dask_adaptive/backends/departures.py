"""One record per unit on its way out, and the stage it has reached: the scale-down bookkeeping that
the controller and a backend share (the controller's executor owns the records of a scale-down; the
kubernetes backend keeps the same records for the removals it runs).

A unit leaves in stages; each stage answers one question the rest of the code asks:

    RETIRING  retire_workers runs: its data is moving.        Capacity? no.   Still in `requested`? yes
    READY     nothing to move (retired, or never a worker);   no              yes
              waiting to be handed to backend.remove (again, after a failed removal)
    REMOVING  inside an unfinished backend.remove;            no              yes
              never handed over a second time meanwhile
    LOWERED   its removal's decrement has landed, the call    no              no
              has not returned yet (Observation.subtracted)
    GONE      removed after a retirement: its worker's exit   -               no
              is expected; forgotten once neither unit nor worker is left

The controller's executor (dask_adaptive/executor.py) moves its records through these stages; the
kubernetes backend moves its own through REMOVING -> LOWERED and reports LOWERED in
`Observation.subtracted`, which the controller copies into its records. Pure and synchronous: every
change is made between two awaits, so a reader never sees half of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum


class Stage(IntEnum):
    RETIRING = 1
    READY = 2
    REMOVING = 3
    LOWERED = 4
    GONE = 5


LEAVING = (Stage.RETIRING, Stage.READY, Stage.REMOVING, Stage.LOWERED)  # not capacity, not yet gone
COUNTED = (Stage.RETIRING, Stage.READY, Stage.REMOVING)  # leaving, but still in the backend's count
IN_REMOVAL = (Stage.REMOVING, Stage.LOWERED)

# where each stage may go next; a removal that fails goes back to READY and is retried
_NEXT = {
    Stage.RETIRING: {Stage.READY},
    Stage.READY: {Stage.REMOVING},
    Stage.REMOVING: {Stage.LOWERED, Stage.READY, Stage.GONE},
    Stage.LOWERED: {Stage.READY, Stage.GONE},
    Stage.GONE: set(),
}


@dataclass
class Departure:
    name: str
    stage: Stage
    why: str  # "retire", "cancel" (never arrived), "orphan" (its worker never came or left), "remove"


class Departures:
    """The records, by unit name. `returned` counts removals that returned: a look taken across one
    is stale (its count may predate a decrement whose records are gone)."""

    def __init__(self) -> None:
        self._records: dict[str, Departure] = {}
        self.returned = 0

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[Departure]:
        return iter(list(self._records.values()))

    def get(self, name: str) -> Departure | None:
        return self._records.get(name)

    def names(self, *stages: Stage, why: str | None = None) -> set[str]:
        return {r.name for r in self._records.values() if r.stage in stages and (why is None or r.why == why)}

    def leaving(self) -> set[str]:
        return self.names(*LEAVING)

    def begin(self, names: Iterable[str], stage: Stage, why: str) -> list[Departure]:
        """New records; a name already leaving keeps the record it has."""
        fresh = [Departure(n, stage, why) for n in names if n not in self._records or self._gone(n)]
        self._records.update((d.name, d) for d in fresh)
        return fresh

    def move(self, names: Iterable[str], stage: Stage) -> None:
        """Advance (or, for a failed removal, return to READY) the records of `names`."""
        for name in names:
            record = self._records.get(name)
            if record is None or record.stage is stage:
                continue
            if stage not in _NEXT[record.stage]:
                raise ValueError(f"{name}: {record.stage.name} cannot become {stage.name}")
            record.stage = stage

    def forget(self, names: Iterable[str]) -> None:
        for name in names:
            self._records.pop(name, None)

    def keep_gone(self, alive: set[str]) -> None:
        """Forget GONE records whose name is neither a unit nor a worker any more."""
        for name in self.names(Stage.GONE) - alive:
            del self._records[name]

    def _gone(self, name: str) -> bool:
        return self._records[name].stage is Stage.GONE
