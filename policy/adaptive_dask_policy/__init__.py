"""adaptive-dask guardrails: the rules (`rules.py`) and how strict they are for a given stack.

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
# Optional stack config (`pulumi config set adaptive-dask:policyStrict true`) to make a non-prod stack
# strict, or (false) to relax a prod-named scratch stack; absent, the stack name decides.
STRICT_CONFIG_KEY = "adaptive-dask:policyStrict"
STRICT_STACK_NAMES = ("prod", "production")


def is_strict(stack: str | None, config: Mapping[str, str] | str | None = None) -> bool:
    """Whether a stack gets every rule as MANDATORY.

    `config` is the stack config as the CLI hands it over (a mapping, or the PULUMI_CONFIG JSON text).
    Unknown stack -> strict: a pack that cannot tell where it runs must fail closed."""
    if isinstance(config, str):
        try:
            config = json.loads(config) if config.strip() else {}
        except ValueError:
            config = {}
    value = str((config or {}).get(STRICT_CONFIG_KEY, "")).strip().lower()
    if value in ("true", "false"):
        return value == "true"
    if not stack:
        return True
    name = stack.rsplit("/", 1)[-1].lower()  # org/project/stack -> stack
    return any(name == s or name.startswith((f"{s}-", f"{s}_")) for s in STRICT_STACK_NAMES)


def build_policies(strict: bool) -> list[Policy]:
    """Every rule as a CrossGuard policy at the enforcement level for a strict or a relaxed stack."""
    return [rule.build(strict) for rule in RULES]
