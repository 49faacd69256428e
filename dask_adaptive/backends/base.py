"""The contract between the scaling controller (policy + retirement) and a worker backend.

A backend only *provides* workers; it never decides how many. Every worker it starts is given a
unique name (a pod name on Kubernetes, a process name locally) that the worker also uses as its Dask
worker name (`dask worker --name <name>`), so a scheduler worker and its backend unit are one lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from dask_adaptive.backends.departures import Departures


class BackendUnavailable(RuntimeError):
    """The backend cannot be used at all (unreachable API, permission denied, missing Deployment).

    Raised by `Backend.start`; the preload turns it into a non-zero scheduler exit with this message.
    """


class BackendError(RuntimeError):
    """A transient failure of one backend call; the controller logs it, counts it and does nothing blind."""


class Phase(StrEnum):
    """Where a backend unit is in its life, as far as scaling decisions care."""

    PENDING = "pending"  # asked for, not yet started (unscheduled pod, process not yet spawned)
    STARTING = "starting"  # started, worker not yet registered with the scheduler / not Ready
    RUNNING = "running"  # its worker is (or was) connected and serving
    TERMINATING = "terminating"  # on its way out; never counted as capacity


@dataclass(frozen=True)
class Unit:
    """One worker slot as the backend sees it: a pod, or a local worker process."""

    name: str
    phase: Phase
    ready: bool = False
    node: str | None = None  # the node it runs on (a pod's spec.nodeName); None: unscheduled, or local
    # It occupies a machine now, which is what the bill counts (metrics.WorkerClock): a pod bound to a
    # node whose containers have not ended (pulling, running or terminating), a started local process.
    # A billing fact, not part of what the decisions compare: left out of equality.
    placed: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Observation:
    """What the backend holds right now.

    How the controller reads it (dask_adaptive/controller.py): a non-TERMINATING unit whose name is
    a connected, accepting scheduler worker is capacity; one without a worker is "pending" (counted as
    wanted, cancelled first on scale-down: PENDING before STARTING before RUNNING); a RUNNING or
    STARTING unit without a worker for `orphan-grace` is removed, PENDING ones never are (they may be
    waiting for a node). Scheduler workers whose name was never a unit are not ours and never touched.
    Which leaving units `requested` still counts, the departures record says (`Backend.observe`).
    """

    requested: int  # the desired count the backend is working towards (Deployment spec.replicas)
    units: tuple[Unit, ...] = field(default_factory=tuple)

    def names(self, *phases: Phase) -> list[str]:
        return [u.name for u in self.units if not phases or u.phase in phases]


@dataclass(frozen=True)
class RemovalReport:
    """What a removal actually did, for logs, metrics and tests."""

    removed: tuple[str, ...]  # units that are gone or going, and were among those asked for
    wrong: tuple[str, ...] = ()  # units the platform removed that were NOT asked for (must be corrected)
    corrected: tuple[str, ...] = ()  # asked-for units the backend had to delete directly after a wrong pick


class Backend(Protocol):
    """Async mechanism; every method must be cheap on the scheduler's event loop (no blocking I/O)."""

    # The one record of units leaving (backends/departures.py), lent by the executor that drives this
    # backend (a backend used on its own keeps its own). A backend whose decrement can land before its
    # remove() returns moves those units REMOVING -> LOWERED through `departures.transition` in the same
    # step as its write, and reads the record to discount them in scale_up; it never sets a stage itself.
    departures: Departures

    async def start(self) -> None:
        """Check the backend is usable (reachable, permitted, target exists); raise BackendUnavailable."""

    async def close(self) -> None:
        """Release resources. Local backends stop their processes; Kubernetes leaves the pods."""

    async def observe(self) -> Observation:
        """The requested count and every unit with its phase. Raises BackendError on failure.

        `requested` is read last, never while a decrement's write and its LOWERED transition are half
        done: the controller reads the departures record right after this returns, with no await
        between, so the count and the record are of one moment.
        """

    async def scale_up(self, n: int) -> None:
        """Make the requested count `n` (only ever called with n above the current requested count).

        May run while a remove() is in flight (a removal can wait for the platform for a minute; new
        work must not wait behind it). That removal's decrement may land between this call and the
        backend's write, so `n` counts every unit of a remove() unfinished at the time of this call (a
        REMOVING or LOWERED record) as still requested; the backend discounts those whose record is
        LOWERED (or GONE) by the time of its own write. Both writes are serialised, so neither undoes
        the other and no unit is asked for twice.
        """

    async def remove(self, names: list[str]) -> RemovalReport:
        """Remove exactly these units and lower the requested count by len(names).

        The decrement is applied to the count as it is at the moment of the write (re-read then), never
        to one read before a wait, so a scale_up() that ran meanwhile is not undone.

        Callers pass only units whose workers were already retired through the scheduler (their data
        moved) or that never became workers (pending/starting), each with a REMOVING record (a name
        without one gets a record for the duration of the call). The backend must make exactly these go:
        on Kubernetes mark them (pod-deletion-cost, NotReady), lower /scale once, verify which pods went,
        and delete a retired pod directly if the ReplicaSet picked another one (reported in `wrong`).
        """

    async def record(self, reason: str, message: str) -> None:
        """Publish one scaling decision where operators look (a Kubernetes Event on the Deployment).

        Best effort: failures are logged by the backend, never raised.
        """
