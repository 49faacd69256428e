"""adaptive-dask guardrails: the rules (`rules.py`; checks in `checks.py`, `fence_checks.py`, `props.py`)
and how strict they are for a given stack.

Why enforcement is chosen here and not per rule at validation time: CrossGuard fixes a policy's
enforcement level when the pack is built, so the pack is built for one stack. The CLI starts the pack
process with PULUMI_STACK (and the stack's config in PULUMI_CONFIG) in its environment; `__main__.py`
passes those to `is_strict()`. Per-policy overrides remain possible with `--policy-pack-config`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pulumi_policy import Policy

from .rules import RULE_NAMES, RULES, Rule

__all__ = ["PACK_NAME", "RULES", "RULE_NAMES", "STRICT_CONFIG_KEY", "Rule", "build_policies", "is_strict"]

PACK_NAME = "adaptive-dask-guardrails"
# The program's own switch (infra/config/load.py `production`): a stack that says it is production gets
# production guardrails whatever its name.
STRICT_CONFIG_KEY = "adaptive-dask:production"
STRICT_STACK_NAMES = ("prod", "production")


def is_strict(stack: str | None, config: Mapping[str, str] | str | None = None) -> bool:
    """Whether a stack gets every rule as MANDATORY: `production: true` in its config, or a prod name.

    `config` is the stack config as the CLI hands it over (a mapping, or the PULUMI_CONFIG JSON text).
    Neither can relax a prod-named stack, and an unknown stack is strict: fail closed."""
    if isinstance(config, str):
        try:
            config = json.loads(config) if config.strip() else {}
        except ValueError:
            config = {}
    if str((config or {}).get(STRICT_CONFIG_KEY, "")).strip().lower() == "true":
        return True
    if not stack:
        return True
    name = stack.rsplit("/", 1)[-1].lower()  # org/project/stack -> stack
    return any(name == s or name.startswith((f"{s}-", f"{s}_")) for s in STRICT_STACK_NAMES)


def build_policies(strict: bool) -> list[Policy]:
    """Every rule as a CrossGuard policy at the enforcement level for a strict or a relaxed stack."""
    return [rule.build(strict) for rule in RULES]
