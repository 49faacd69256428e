"""docs/configuration-reference.md is generated from the code's defaults and the meanings kept next to
them (infra/config/reference.py): the committed file must be the generator's output, and the generator
must refuse to run when a key and its entry part ways."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dask_adaptive import config as preload_config
from dask_adaptive import options
from infra.aws.live import EKS_UNSUPPORTED_ZONE_IDS
from infra.config import autoscaler, aws, kubernetes, node_groups, reader, reference
from testbed.infra.harness import REPO_ROOT

STALE = "stale: python -m infra.config.reference > docs/configuration-reference.md"


def test_the_committed_reference_is_current() -> None:
    assert (REPO_ROOT / reference.OUTPUT).read_text() == reference.reference_markdown(), STALE


def test_the_module_prints_the_reference() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "infra.config.reference"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert proc.stdout == reference.reference_markdown()


@pytest.mark.parametrize(
    "defaults",
    [
        aws.DEFAULT_NETWORK,
        aws.DEFAULT_CLUSTER,
        aws.DEFAULT_SYSTEM,
        node_groups.DEFAULT_WORKER,
        kubernetes.DASK_DEFAULTS,
        autoscaler.AUTOSCALER_DEFAULTS,
    ],
    ids=["network", "cluster", "systemNodeGroup", "workerGroups", "dask", "autoscaler"],
)
def test_a_default_without_an_entry_stops_the_generator(monkeypatch, defaults) -> None:
    monkeypatch.setitem(defaults, "brandNewKey", 3)
    with pytest.raises(
        reference.ReferenceDrift, match=r"brandNewKey: has a default in the code but no entry"
    ):
        reference.reference_markdown()


def test_an_entry_for_a_key_the_code_lacks_stops_the_generator(monkeypatch) -> None:
    monkeypatch.setitem(reference.KEYS, "dask.removedKey", reference.Entry("bool", "gone from the code"))
    with pytest.raises(reference.ReferenceDrift, match=r"dask\.removedKey: entry in KEYS for a key the code"):
        reference.reference_markdown()


def test_a_computed_default_must_say_what_it_depends_on(monkeypatch) -> None:
    monkeypatch.setitem(kubernetes.DASK_DEFAULTS, "image", None)  # its entry has no `default` text
    with pytest.raises(reference.ReferenceDrift, match=r"dask\.image: its default is computed"):
        reference.reference_markdown()


def test_a_new_top_level_or_provider_key_stops_the_generator(monkeypatch) -> None:
    monkeypatch.setattr(reader, "TOP_LEVEL_KEYS", (*reader.TOP_LEVEL_KEYS, "newTopLevel"))
    with pytest.raises(reference.ReferenceDrift, match="newTopLevel"):
        reference.reference_markdown()
    monkeypatch.undo()
    monkeypatch.setitem(reader.PROVIDER_KEYS, "kubernetes", ("context",))
    with pytest.raises(reference.ReferenceDrift, match="kubernetes:context"):
        reference.reference_markdown()


def test_every_key_has_one_row_with_its_default_from_the_code() -> None:
    doc = reference.reference_markdown()
    rows = [line for line in doc.splitlines() if line.startswith("| `")]
    assert len(rows) == len(reference.KEYS) + len(reference.preload_entries())
    for table, name, value, _entry in reference.check():
        (row,) = [
            r for r in rows if r.startswith(f"| `{table.show(name)}` |") and r in table_body(doc, table)
        ]
        if value is not None:
            assert row.split(" | ")[2].startswith(reference.render_default(value)), name


def table_body(doc: str, table: reference.Table) -> str:
    return doc.split(table.heading + "\n")[1].split("\n#")[0]


def test_keys_passed_to_the_preload_take_its_own_meaning_and_default(monkeypatch) -> None:
    """`dask.*` keys the program passes through as they are (dask_adaptive/options.py `stack=True`) are
    documented from adaptive.yaml, not written a second time; a hand-written entry for one is refused."""
    doc = reference.reference_markdown()
    preload = preload_config.reference()
    for option in options.OPTIONS:
        if option.stack:
            assert f"| `{option.stack_key}` |" in doc
            assert preload[f"adaptive.{option.key}"].meaning.replace("|", "\\|") in doc
    passed = list(reference.preload_entries())
    if passed:
        monkeypatch.setitem(reference.KEYS, passed[0], reference.Entry("bool", "written twice"))
        with pytest.raises(reference.ReferenceDrift, match="passed through to the preload; keep one"):
            reference.reference_markdown()


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1.35", '`"1.35"`'),  # YAML would read 1.35 as a number: a stack file must quote it
        ("0.5", '`"0.5"`'),
        ("", '`""`'),
        ("us-east-1", "`us-east-1`"),
        (False, "`false`"),
        (30, "`30`"),
        ([], "`[]`"),
        ({}, "`{}`"),
        (["api", "audit"], "`[api, audit]`"),
    ],
)
def test_defaults_are_shown_as_a_stack_file_spells_them(value, shown) -> None:
    assert reference.render_default(value) == shown


def test_the_zone_ids_eks_refuses_are_the_ones_the_program_skips() -> None:
    """The one fact of the AWS layer the config reference states (config must not import infra.aws)."""
    meaning = reference.KEYS["network.azCount"].meaning
    for zone_id in EKS_UNSUPPORTED_ZONE_IDS:
        assert f"`{zone_id}`" in meaning
    assert meaning.count("-az") == len(EKS_UNSUPPORTED_ZONE_IDS)
