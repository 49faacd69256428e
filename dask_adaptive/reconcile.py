"""Worker <-> unit bookkeeping: pure functions that find what is out of step, no I/O.

Worker name = unit name, so both directions are set lookups:
* a unit without a connected worker for longer than a grace period is an orphan (crash-looping or
  never joined) and is removed; units still PENDING (waiting for a node) are left to the decisions,
  which cancels them first when they are no longer wanted;
* a scheduler worker whose unit is gone is dropped from the scheduler (it cannot come back).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dask_adaptive.backends.base import Phase, Unit


@dataclass(frozen=True)
class Findings:
    orphans: tuple[str, ...]  # units to remove
    unitless: tuple[str, ...]  # worker names to drop from the scheduler
    no_worker_since: dict[str, float]  # state for the next call
    unit_gone_since: dict[str, float]


def reconcile(
    now: float,
    units: Iterable[Unit],
    workers: Iterable[str],
    known: set[str],
    no_worker_since: Mapping[str, float],
    unit_gone_since: Mapping[str, float],
    orphan_grace: float,
    gone_grace: float,
) -> Findings:
    """`known` = every unit name this backend ever reported; only those workers are ours to drop."""
    live = {u.name: u for u in units if u.phase is not Phase.TERMINATING}
    present = set(workers)

    waiting: dict[str, float] = {}
    orphans = []
    for name, unit in live.items():
        if name in present or unit.phase is Phase.PENDING:
            continue
        since = no_worker_since.get(name, now)
        waiting[name] = since
        if now - since >= orphan_grace:
            orphans.append(name)

    all_units = {u.name for u in units}
    gone: dict[str, float] = {}
    unitless = []
    for name in sorted(present & known - all_units):
        since = unit_gone_since.get(name, now)
        gone[name] = since
        if now - since >= gone_grace:
            unitless.append(name)

    return Findings(tuple(sorted(orphans)), tuple(unitless), waiting, gone)
