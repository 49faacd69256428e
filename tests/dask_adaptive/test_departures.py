"""The departures record (dask_adaptive/backends/departures.py): its one transition method and its table.

Every allowed stage change, every refused one (the error names the unit and both stages, and nothing
changes), entries and exits, and that nobody outside the record can set a stage.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
from pathlib import Path

import pytest

import dask_adaptive
from dask_adaptive.backends.departures import (
    ENTRY,
    TRANSITIONS,
    Departures,
    IllegalTransition,
    Reason,
    Stage,
)

# the scale-down's life of a unit, as the module docstring draws it
ALLOWED = {
    (Stage.RETIRING, Stage.READY),  # retired: nothing unique left on it
    (Stage.READY, Stage.REMOVING),  # handed to backend.remove
    (Stage.REMOVING, Stage.LOWERED),  # the backend's decrement is written
    (Stage.REMOVING, Stage.READY),  # the removal failed before any decrement: retried
    (Stage.REMOVING, Stage.GONE),  # the removal returned (a backend whose decrement lands at its return)
    (Stage.LOWERED, Stage.READY),  # the removal failed after its decrement: retried
    (Stage.LOWERED, Stage.GONE),  # the removal returned
}
ILLEGAL = sorted(
    (old, new) for old, new in itertools.product(Stage, Stage) if old is not new and (old, new) not in ALLOWED
)
# a path from an entry stage to each stage
PATH = {
    Stage.RETIRING: (Stage.RETIRING,),
    Stage.READY: (Stage.READY,),
    Stage.REMOVING: (Stage.REMOVING,),
    Stage.LOWERED: (Stage.REMOVING, Stage.LOWERED),
    Stage.GONE: (Stage.REMOVING, Stage.GONE),
}


def at(stage: Stage, name: str = "u1", reason: Reason = Reason.RETIRE) -> Departures:
    d = Departures()
    first, *rest = PATH[stage]
    d.begin([name], first, reason)
    for step in rest:
        d.transition([name], step)
    assert d.get(name).stage is stage
    return d


def test_the_transition_table_is_the_documented_one():
    assert {(old, new) for old, nexts in TRANSITIONS.items() for new in nexts} == ALLOWED
    assert set(TRANSITIONS) == set(Stage)
    assert {Stage.RETIRING, Stage.READY, Stage.REMOVING} == ENTRY
    with pytest.raises(TypeError):
        TRANSITIONS[Stage.GONE] = frozenset({Stage.READY})  # type: ignore[index]


@pytest.mark.parametrize(("old", "new"), sorted(ALLOWED))
def test_every_allowed_transition(old, new):
    d = at(old)
    record = d.get("u1")
    d.transition(["u1"], new)
    assert d.get("u1") is record and record.stage is new  # the same record, moved: holders see it


@pytest.mark.parametrize(("old", "new"), ILLEGAL)
def test_every_other_transition_is_refused_naming_unit_from_and_to(old, new):
    d = at(old, name="w-7")
    with pytest.raises(IllegalTransition) as err:
        d.transition(["w-7"], new)
    assert (err.value.name, err.value.old, err.value.new) == ("w-7", old, new)
    assert f"departure of unit w-7: {old.name} cannot become {new.name}" in str(err.value)
    assert isinstance(err.value, ValueError)
    assert d.get("w-7").stage is old, "a refused transition changes nothing"


def test_a_refused_batch_changes_no_record():
    d = Departures()
    d.begin(["a"], Stage.READY, Reason.CANCEL)
    d.begin(["b"], Stage.RETIRING, Reason.RETIRE)
    with pytest.raises(IllegalTransition, match="unit b: RETIRING cannot become REMOVING"):
        d.transition(["a", "b"], Stage.REMOVING)  # legal for a, not for b
    assert (d.get("a").stage, d.get("b").stage) == (Stage.READY, Stage.RETIRING)


def test_same_stage_and_unknown_names_are_left_alone():
    d = at(Stage.LOWERED)
    d.transition(["u1", "nobody"], Stage.LOWERED)
    assert d.get("u1").stage is Stage.LOWERED and "nobody" not in d


@pytest.mark.parametrize("stage", sorted(ENTRY))
def test_a_record_begins_at_an_entry_stage(stage):
    d = Departures()
    [record] = d.begin(["u1", "u1"], stage, Reason.ORPHAN)
    assert (record.name, record.stage, record.reason) == ("u1", stage, Reason.ORPHAN) and len(d) == 1


@pytest.mark.parametrize("stage", [Stage.LOWERED, Stage.GONE])
def test_a_record_never_begins_past_its_removal(stage):
    d = Departures()
    with pytest.raises(IllegalTransition, match=f"departure of unit u1: cannot begin at {stage.name}"):
        d.begin(["u1"], stage, Reason.REMOVE)
    assert "u1" not in d


def test_a_gone_unit_that_leaves_again_gets_a_fresh_record():
    d = at(Stage.GONE)
    old = d.get("u1")
    [fresh] = d.begin(["u1"], Stage.READY, Reason.ORPHAN)
    assert fresh is d.get("u1") and fresh is not old and old.stage is Stage.GONE


@pytest.mark.parametrize("removed", [True, False])
def test_the_end_of_a_removal(removed):
    """Retired units become GONE (READY after a failure: retried); the others leave the record."""
    d = Departures()
    d.begin(["r1", "r2"], Stage.READY, Reason.RETIRE)
    d.begin(["c"], Stage.READY, Reason.CANCEL)
    d.begin(["o"], Stage.READY, Reason.ORPHAN)
    d.transition(["r1", "r2", "c", "o"], Stage.REMOVING)
    d.transition(["r1", "c"], Stage.LOWERED)
    assert d.removals_ended == 0
    assert sorted(d.end_removal(["r1", "r2", "c", "o"], removed=removed)) == ["r1", "r2"]
    assert d.removals_ended == 1
    assert {r.name for r in d} == {"r1", "r2"}
    assert d.names(Stage.GONE if removed else Stage.READY, reason=Reason.RETIRE) == {"r1", "r2"}


def test_a_record_is_read_only_outside_the_transition():
    d = at(Stage.REMOVING)
    record = d.get("u1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.stage = Stage.GONE  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.reason = Reason.CANCEL  # type: ignore[misc]
    with pytest.raises(AttributeError):
        d.removals_ended = 0  # type: ignore[misc]
    assert record.stage is Stage.REMOVING and record.reason is Reason.RETIRE


def test_no_module_but_the_record_sets_a_stage():
    """The backend set `record.stage` directly once; now only Departures.transition may, so a stage
    written anywhere else in the package (an assignment, or the frozen dataclass's escape hatch) fails
    here, naming the place."""
    root = Path(dask_adaptive.__file__).parent
    writers = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            hatch = (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in ("object.__setattr__", "setattr")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value == "stage"
            )
            if hatch or any(isinstance(t, ast.Attribute) and t.attr == "stage" for t in targets):
                writers.append(f"{path.relative_to(root)}:{node.lineno}")
    assert len(writers) == 1 and writers[0].startswith("backends/departures.py:"), writers


def test_reasons_are_an_enum_with_the_old_spellings():
    assert [r.value for r in Reason] == ["retire", "cancel", "orphan", "remove"]
