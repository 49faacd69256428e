"""The departures record: the one table of units on their way out, and the stage each has reached.

A unit leaves in stages; each answers one question the rest of the code asks:

    stage     what is happening                                   capacity?   still in `requested`?
    RETIRING  retire_workers runs: its data is moving              no          yes
    READY     nothing to move (retired, or never a worker):        no          yes
              waiting to be handed to backend.remove (again, after a failed removal)
    REMOVING  inside an unfinished backend.remove; never handed    no          yes
              over a second time meanwhile
    LOWERED   its removal's decrement has landed, the call has     no          no
              not returned yet
    GONE      removed after a retirement: its worker's exit is     -           no
              expected; forgotten once neither unit nor worker is left

One table per controller. Its executor (dask_adaptive/executor.py) owns it and lends it to the backend
it drives (`Backend.departures`): the executor moves a unit through retirement and ends its removal, the
backend moves the units of its removal from REMOVING to LOWERED when its decrement is written, the
controller only reads it. A stage changes only through `Departures.transition`, along `TRANSITIONS`; a
record is read-only everywhere else. Pure and synchronous: every change is made between two awaits, so
a reader never sees half of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from types import MappingProxyType


class Stage(IntEnum):
    RETIRING = 1
    READY = 2
    REMOVING = 3
    LOWERED = 4
    GONE = 5


class Reason(StrEnum):
    """Why a unit leaves: it decides how its removal ends (`Departures.end_removal`)."""

    RETIRE = "retire"  # its worker was retired through the scheduler (data moved): GONE once removed
    CANCEL = "cancel"  # requested but never arrived: removed without retirement
    ORPHAN = "orphan"  # its worker never came, or left: removed without retirement
    REMOVE = "remove"  # handed to a removal without an earlier record (a backend used on its own)


LEAVING = (Stage.RETIRING, Stage.READY, Stage.REMOVING, Stage.LOWERED)  # not capacity, not yet gone
COUNTED = (Stage.RETIRING, Stage.READY, Stage.REMOVING)  # leaving, but still in the backend's count
IN_REMOVAL = (Stage.REMOVING, Stage.LOWERED)

# the stages a record may begin at: a retirement, a unit with nothing to move, a removal on its own
ENTRY = frozenset({Stage.RETIRING, Stage.READY, Stage.REMOVING})
# where each stage may go next; a removal that fails goes back to READY and is retried
TRANSITIONS: Mapping[Stage, frozenset[Stage]] = MappingProxyType(
    {
        Stage.RETIRING: frozenset({Stage.READY}),  # retired, nothing unique left on it
        Stage.READY: frozenset({Stage.REMOVING}),  # handed to backend.remove
        Stage.REMOVING: frozenset({Stage.LOWERED, Stage.READY, Stage.GONE}),  # written / failed / removed
        Stage.LOWERED: frozenset({Stage.READY, Stage.GONE}),  # its removal returned: failed / removed
        Stage.GONE: frozenset(),
    }
)


class IllegalTransition(ValueError):
    """A stage change `TRANSITIONS` (or `ENTRY`) does not allow: a bug in the caller, never a platform
    condition, so it is raised before any record changes."""

    def __init__(self, name: str, old: Stage | None, new: Stage) -> None:
        self.name, self.old, self.new = name, old, new
        if old is None:
            allowed = ", ".join(s.name for s in sorted(ENTRY))
            super().__init__(f"departure of unit {name}: cannot begin at {new.name} (only at {allowed})")
            return
        allowed = ", ".join(s.name for s in sorted(TRANSITIONS[old])) or "nothing"
        super().__init__(
            f"departure of unit {name}: {old.name} cannot become {new.name} (from {old.name}: {allowed})"
        )


@dataclass(frozen=True, eq=False)
class Departure:
    """One unit on its way out. Frozen: only `Departures.transition` changes its stage, so whoever holds
    a record (a scale_up counting the units in removal) reads the stage the table gave it."""

    name: str
    stage: Stage
    reason: Reason


class Departures:
    """The units on their way out, by name, and the one way their stages change.

    **State**

    records: Departure by unit name
        One per leaving unit, and one per GONE unit whose unit or worker is still around.
    removals_ended: int
        Removals that returned (`end_removal`). A look at the backend taken across one may still list
        units whose records it ended, so the controller discards such a look.

    **Methods**

    begin : names, stage, reason -> new records
        Records at an `ENTRY` stage; a name already leaving keeps the record it has.
    transition : names, stage -> None
        The one way a stage changes, along `TRANSITIONS`; anything else raises `IllegalTransition`.
    end_removal : names, removed -> retired names
        A removal returned: retired units become GONE (READY to retry, if it failed), the rest leave.
    forget, forget_gone
        Records leave the table (a retirement given up, a cancel that arrived, a GONE unit long gone).
    """

    def __init__(self) -> None:
        self._records: dict[str, Departure] = {}
        self._removals_ended = 0

    @property
    def removals_ended(self) -> int:
        return self._removals_ended

    # -- reading ---------------------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[Departure]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    def get(self, name: str) -> Departure | None:
        return self._records.get(name)

    def names(self, *stages: Stage, reason: Reason | None = None) -> set[str]:
        return {
            r.name
            for r in self._records.values()
            if r.stage in stages and (reason is None or r.reason is reason)
        }

    def leaving(self) -> set[str]:
        return self.names(*LEAVING)

    # -- changing --------------------------------------------------------------------------------

    def begin(self, names: Iterable[str], stage: Stage, reason: Reason) -> list[Departure]:
        """New records at `stage`; a name already leaving keeps the record it has (a GONE one is
        replaced: that unit leaves again)."""
        fresh = [
            Departure(n, stage, reason)
            for n in dict.fromkeys(names)
            if n not in self._records or self._records[n].stage is Stage.GONE
        ]
        if fresh and stage not in ENTRY:
            raise IllegalTransition(fresh[0].name, None, stage)
        self._records.update((d.name, d) for d in fresh)
        return fresh

    def transition(self, names: Iterable[str], stage: Stage) -> None:
        """Move the records of `names` to `stage` (names without a record, or already there, are left
        alone). All or nothing: a step `TRANSITIONS` does not allow raises before any record changes."""
        records = (self._records.get(n) for n in dict.fromkeys(names))
        moving = [r for r in records if r is not None and r.stage is not stage]
        for record in moving:
            if stage not in TRANSITIONS[record.stage]:
                raise IllegalTransition(record.name, record.stage, stage)
        for record in moving:
            object.__setattr__(record, "stage", stage)  # the one place a stage changes (records are frozen)

    def end_removal(self, names: Iterable[str], removed: bool) -> list[str]:
        """A backend.remove of `names` returned, `removed` unless it failed. Retired units become GONE,
        their worker's exit expected (READY after a failure: retried); the others are forgotten either
        way. Returns the retired names."""
        names = list(names)
        self._removals_ended += 1
        retired = [n for n in names if (d := self._records.get(n)) is not None and d.reason is Reason.RETIRE]
        self.forget(set(names) - set(retired))
        self.transition(retired, Stage.GONE if removed else Stage.READY)
        return retired

    def forget(self, names: Iterable[str]) -> None:
        for name in names:
            self._records.pop(name, None)

    def forget_gone(self, alive: set[str]) -> None:
        """Forget GONE records whose name is neither a unit nor a worker any more."""
        for name in self.names(Stage.GONE) - alive:
            del self._records[name]
