"""The configuration reference, `docs/configuration-reference.md`, generated from the code.

Defaults are read from where the program takes them (`load.py`, `reader.py`, `aws.py`, `kubernetes.py`,
`autoscaler.py`); allowed values and one-line meanings live in `KEYS` below, next to the code, with the
validators' own constants filled in. `reference_markdown()` raises `ReferenceDrift` when a key has a
default but no entry, an entry names no key, or a computed default (None) does not say what it depends
on, so the reference cannot drift from the code. `tests/infra/config/test_reference.py` holds the
committed file equal to the output of

    python -m infra.config.reference > docs/configuration-reference.md
"""

# ruff: noqa: RUF001 (the meanings are prose: en dashes for ranges, multiplication signs for products)
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from dask_adaptive import config as preload_config
from dask_adaptive import options
from infra.config import autoscaler as autoscaler_config
from infra.config import aws as aws_config
from infra.config import budget as budget_config
from infra.config import jupyter as jupyter_config
from infra.config import kubernetes as kubernetes_config
from infra.config import load, node_groups, reader
from infra.config import monitoring as monitoring_config
from infra.config.reference_keys import CA_MINORS, KEYS, Entry, choices
from infra.facts import instance_types
from infra.facts.placement import (
    EXPENDABLE_PRIORITY_CUTOFF,
    HEADROOM_PRIORITY,
    POOL_LABEL,
    WORKER_TAINT,
)

OUTPUT = "docs/configuration-reference.md"
# Settings of the Pulumi engine the stack files carry; the program reads none of them.
ENGINE_KEYS: dict[str, Any] = {"pulumi:disable-default-providers": None}


class ReferenceDrift(Exception):
    """The meanings table and the code's keys disagree: the reference would be wrong."""


_PRELOAD_KINDS = {
    options.INT: "int",
    options.DURATION: "seconds (`30`) or a duration (`90s`, `2m`)",
    options.BOOL: "bool",
    options.TEXT: "string",
    options.SIZE: "size",
}


def preload_entries() -> dict[str, Entry]:
    """The `dask.*` keys a stack passes to the preload as they are (`stack=True` rows of
    dask_adaptive/options.py): their meaning and default are the preload's own (adaptive.yaml), so they
    are not written twice."""
    preload = preload_config.reference()
    entries = {}
    for option in options.OPTIONS:
        if option.stack:
            key = preload[f"adaptive.{option.key}"]
            allowed = choices(option.choices) if option.choices else _PRELOAD_KINDS[option.kind]
            entries[f"dask.{option.stack_key}"] = Entry(
                allowed,
                f"preload `{option.flag}`: {key.meaning}",
                f"unset: the preload's ({render_default(key.default)})",
            )
    return entries


_DASK_SIZING = (
    "Worker sizing (aws): allocatable is computed as EKS does it (`infra/facts/instance_types.py`: "
    "kube-reserved memory 11 MiB × max pods + 255 MiB, CPU 6/1/0.5/0.25 % bands, "
    f"{instance_types.MEMORY_EVICTION_MIB}Mi eviction, {instance_types.VM_MEMORY_OVERHEAD_FRACTION:.1%} VM "
    f"overhead) minus {instance_types.DAEMONSET_CPU_MILLICORES}m CPU / "
    f"{instance_types.DAEMONSET_MEMORY_MIB}Mi for DaemonSets (arithmetic in `infra/facts/sizing.py`); only "
    "instance types in that table are accepted for worker groups. arm64 (Graviton) types are refused for "
    "now: the table is x86_64 only and an arm64 build of the pinned stock Dask image is not verified."
)
_AUTOSCALER_NOTES = (
    f"`--expendable-pods-priority-cutoff={EXPENDABLE_PRIORITY_CUTOFF}` is always set (CA's default, pinned): "
    f"headroom placeholders (priority {HEADROOM_PRIORITY}) stay above it, so they still make CA add "
    "nodes.\n\n"
    "The cluster-autoscaler image follows the cluster's Kubernetes minor (`CA_IMAGE_TAGS` in "
    f"`infra/facts/versions.py`, {CA_MINORS}); another minor fails at config time. The chart: "
    "[configuration.md](configuration.md#cluster-autoscaler)."
)


@dataclass(frozen=True)
class Table:
    heading: str  # markdown heading line
    prefix: str  # the KEYS prefix of its keys ("network." ; "" for the top level)
    defaults: Callable[[], Mapping[str, Any]]  # read when generating, so a changed dict is seen
    before: str = ""  # above the heading (a layer's own heading)
    intro: str = ""
    outro: str = ""
    show: Callable[[str], str] = lambda name: name  # the key as the first column shows it


def _top_level_defaults() -> dict[str, Any]:
    """`adaptive-dask:` scalars (load.py; `tags` and `kubeContext` default inline there), the providers'
    keys the program reads (reader.PROVIDER_KEYS) and the engine settings the stack files carry."""
    objects = {t.prefix.split(".")[0] for t in _TABLES if t.prefix}  # `dask.jupyter.` is in `dask`
    project = {
        "target": load.DEFAULT_TARGET,
        "production": load.DEFAULT_PRODUCTION,
        "namePrefix": load.DEFAULT_NAME_PREFIX,
        "tags": {},
        "kubeContext": None,
    }
    scalars = [k for k in reader.TOP_LEVEL_KEYS if k not in objects]
    if sorted(project) != sorted(scalars) or not objects <= set(reader.TOP_LEVEL_KEYS):
        raise ReferenceDrift(
            f"top-level keys in reader.TOP_LEVEL_KEYS ({', '.join(reader.TOP_LEVEL_KEYS)}) are not the ones "
            f"the reference knows (objects {', '.join(sorted(objects))}; scalars {', '.join(project)}): "
            "add the key to infra/config/reference.py"
        )
    providers = {"aws:region": aws_config.DEFAULT_REGION}
    read = [f"{ns}:{k}" for ns, keys in reader.PROVIDER_KEYS.items() for k in keys]
    if sorted(providers) != sorted(read):
        raise ReferenceDrift(f"provider keys read by the program ({', '.join(read)}) have no default here")
    return {**project, **providers, **ENGINE_KEYS}


_TABLES: list[Table] = [
    Table(
        "## Top level",
        "",
        _top_level_defaults,
        show=lambda name: name if ":" in name else reader.key(name),
    ),
    Table(
        "### `adaptive-dask:network` (object)",
        "network.",
        lambda: aws_config.DEFAULT_NETWORK,
        before="## AWS layer\n\nRead by the `aws` target only.",
    ),
    Table("### `adaptive-dask:cluster` (object)", "cluster.", lambda: aws_config.DEFAULT_CLUSTER),
    Table(
        "### `adaptive-dask:systemNodeGroup` (object)", "systemNodeGroup.", lambda: aws_config.DEFAULT_SYSTEM
    ),
    Table(
        "### `adaptive-dask:workerGroups` (list of objects)",
        "workerGroups.",
        lambda: {"name": None, **node_groups.DEFAULT_WORKER},
        intro=(
            f"Default: `{json.dumps(node_groups.DEFAULT_WORKER_GROUPS)}` with the field defaults below. "
            "Every "
            f"group is tainted `{WORKER_TAINT.key}={WORKER_TAINT.value}:{WORKER_TAINT.effect}` and labelled "
            f"`{POOL_LABEL}=<name>`; cluster-autoscaler owns its desired size and gets scale-from-zero tags "
            "on its Auto Scaling Group."
        ),
    ),
    Table(
        "### `adaptive-dask:images` (object, aws only)",
        "images.",
        lambda: aws_config.DEFAULT_IMAGES,
        intro="Any other target refuses the key (it pulls from any registry).",
    ),
    Table(
        "### `adaptive-dask:budget` (object, aws only)",
        "budget.",
        lambda: budget_config.DEFAULT_BUDGET,
        intro=(
            "Unset: no budget (production warns). Any other target refuses the key. The tag must be "
            "activated as a cost-allocation tag once per account: [Cost](cost.md#seeing-the-bill)."
        ),
    ),
    Table(
        "### `adaptive-dask:dask` (object)",
        "dask.",
        lambda: kubernetes_config.DASK_DEFAULTS,
        before="## Kubernetes layer\n\nRead by both targets, except where a key says otherwise.",
        outro=_DASK_SIZING,
    ),
    Table(
        "#### `adaptive-dask:dask.jupyter` (object)",
        "dask.jupyter.",
        lambda: jupyter_config.JUPYTER_DEFAULTS,
        intro="Off by default; the other fields are read only when `enabled` is true.",
    ),
    Table(
        "#### `adaptive-dask:dask.monitoring` (object)",
        "dask.monitoring.",
        lambda: monitoring_config.MONITORING_DEFAULTS,
        intro="Everything off by default; see [monitoring.md](monitoring.md).",
    ),
    Table(
        "### `adaptive-dask:autoscaler` (object, aws only)",
        "autoscaler.",
        lambda: autoscaler_config.AUTOSCALER_DEFAULTS,
        outro=_AUTOSCALER_NOTES,
    ),
]


def render_default(value: Any) -> str:
    """A default as a stack file would spell it: YAML flow style, strings quoted where YAML would read
    them as something else (`"1.35"`, never 1.35)."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"`{value}`"
    if isinstance(value, str):
        return f"`{value}`" if value and isinstance(yaml.safe_load(value), str) else f'`"{value}"`'
    return f"`{yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def check(keys: Mapping[str, Entry] | None = None) -> list[tuple[Table, str, Any, Entry]]:
    """Every key with a default has an entry, every entry a key, every computed default a description."""
    keys = KEYS if keys is None else keys
    passed = preload_entries()
    problems = [
        f"{k}: in KEYS and passed through to the preload; keep one" for k in sorted(set(keys) & set(passed))
    ]
    keys = {**keys, **passed}
    rows: list[tuple[Table, str, Any, Entry]] = []
    for table in _TABLES:
        for name, value in table.defaults().items():
            full = table.prefix + name
            entry = keys.get(full)
            if entry is None:
                problems.append(f"{full}: has a default in the code but no entry in KEYS")
            elif value is None and not entry.default:
                problems.append(f"{full}: its default is computed (None); the entry must say what it is")
            else:
                rows.append((table, name, value, entry))
    known = {table.prefix + name for table in _TABLES for name in table.defaults()}
    problems += [f"{k}: entry in KEYS for a key the code does not have" for k in sorted(set(keys) - known)]
    if problems:
        raise ReferenceDrift("configuration reference out of step with the code:\n  " + "\n  ".join(problems))
    return rows


def reference_markdown() -> str:
    """docs/configuration-reference.md."""
    rows = check()
    lines = [
        "# Configuration reference",
        "",
        f"<!-- Generated: python -m infra.config.reference > {OUTPUT}. Do not edit. -->",
        "",
        "Every `adaptive-dask:*` key, its allowed values, its default and what it does. Generated from the",
        "defaults in `infra/config/` and the meanings kept next to them in `infra/config/reference.py` by",
        f"`python -m infra.config.reference > {OUTPUT}`; `tests/infra/config/test_reference.py` keeps",
        "this file equal to that output. How values are read and checked:",
        "[configuration.md](configuration.md); what changing a key does to a running stack:",
        "[operations.md](operations.md#changing-stack-config-safely).",
    ]
    for table in _TABLES:
        lines += ["", table.before, ""] if table.before else [""]
        lines += [table.heading, ""]
        lines += [table.intro, ""] if table.intro else []
        lines += ["| key | allowed | default | meaning |", "|---|---|---|---|"]
        for row_table, name, value, entry in rows:
            if row_table is not table:
                continue
            if value is None:
                default = entry.default
            else:
                note = entry.default
                default = render_default(value) + (f"{'' if note[:1] == '(' else ';'} {note}" if note else "")
            cells = (f"`{table.show(name)}`", entry.allowed, default, entry.meaning)
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        if table.outro:
            lines += ["", table.outro]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
