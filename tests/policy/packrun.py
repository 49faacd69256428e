"""Run the whole policy pack offline, the way the engine would, over hand-made or mock-recorded resources.

Resource policies get each resource's *inputs* (what `Analyze` sees before a step); stack policies get
every resource's *state* with parents, dependencies and property dependencies linked (`AnalyzeStack`).
Props are wrapped in pulumi-policy's unknown-checking proxy, as at run time, so a rule that treats
props as plain dicts/lists fails here too.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adaptive_dask_policy import build_policies
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy


@dataclass
class Res:
    """The minimum the pack needs about one resource (the harness's Node has all of these)."""

    type: str
    name: str
    inputs: dict
    state: dict | None = None
    ignore_changes: list[str] = field(default_factory=list)
    parent: str = ""
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    urn: str = ""
    custom: bool = True

    def __post_init__(self) -> None:
        self.urn = self.urn or f"urn:pulumi:test::adaptive-dask::{self.type}::{self.name}"
        if self.state is None:
            self.state = copy.deepcopy(self.inputs)


@dataclass(frozen=True)
class Violation:
    policy: str
    level: EnforcementLevel
    message: str
    urn: str | None


def opts(ignore_changes: Iterable[str] = (), parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False,
        ignore_changes=list(ignore_changes),
        delete_before_replace=None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=[],
        parent=parent,
    )


def resource_args(r: Any) -> ResourceValidationArgs:
    return ResourceValidationArgs(
        resource_type=r.type,
        props=unknown_checking_proxy(copy.deepcopy(dict(r.inputs))),
        urn=r.urn,
        name=r.name,
        opts=opts(r.ignore_changes, r.parent or None),
        provider=None,
    )


def stack_args(resources: Sequence[Any]) -> StackValidationArgs:
    prs = {
        r.urn: PolicyResource(
            r.type,
            unknown_checking_proxy(copy.deepcopy(dict(r.state or r.inputs))),
            r.urn,
            r.name,
            opts(r.ignore_changes, r.parent or None),
            None,
            None,
            [],
            {},
        )
        for r in resources
        if r.custom
    }
    for r in resources:
        if r.urn not in prs:
            continue
        pr = prs[r.urn]
        pr.parent = prs.get(r.parent)
        pr.dependencies = [prs[d] for d in r.dependencies if d in prs]
        pr.property_dependencies = {
            k: [prs[d] for d in v if d in prs] for k, v in (r.property_dependencies or {}).items()
        }
    return StackValidationArgs(list(prs.values()))


def run_pack(resources: Sequence[Any], strict: bool) -> list[Violation]:
    """Every policy over every (custom) resource, as `pulumi preview --policy-pack policy` would."""
    found: list[Violation] = []
    for policy in build_policies(strict):
        level = policy.enforcement_level

        def report(message: str, urn: str | None = None, _p: str = policy.name, _l: Any = level) -> None:
            found.append(Violation(_p, _l, message, urn))

        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                if r.custom:
                    current = r.urn

                    def report_r(message: str, urn: str | None = None, _u: str = current) -> None:
                        report(message, urn or _u)

                    assert policy.validate(resource_args(r), report_r) is None  # all rules are sync
        elif isinstance(policy, StackValidationPolicy):
            assert policy.validate(stack_args(resources), report) is None
    return found


def by_policy(violations: Iterable[Violation]) -> Mapping[str, list[Violation]]:
    out: dict[str, list[Violation]] = {}
    for v in violations:
        out.setdefault(v.policy, []).append(v)
    return out
