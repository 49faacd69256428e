"""`CostBudget`: the stack's monthly AWS Budget (`adaptive-dask:budget`), filtered to the stack's own
cost-allocation tag, alerting by e-mail at each threshold on actual and on forecasted spend.

Why a tag filter: several stacks (and other workloads) share an account; `Stack=<stack>` is on every
billable resource of this one (provider default tags; launch-template tag specifications for what the
node groups launch; tests/infra/aws/test_cost_tags.py checks the whole graph). A Budgets cost filter
names a user-defined tag as `user:<key>$<value>` (AWS Cost Management guide, "Using filters in budgets";
hashicorp/terraform-provider-aws#40987 and #41085 for the `user:` prefix). AWS counts only tags that
are *activated* as cost-allocation tags (Billing console or `aws ce update-cost-allocation-tags-status`,
from the management account); the stack does not activate them itself (docs/cost.md says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.aws.component import AwsComponent
from infra.config.budget import NOTIFICATION_TYPES, BudgetConfig, is_placeholder_email
from infra.config.reader import PROJECT
from infra.errors import ConfigError

# The built-in tag (infra/config/load.py) the budget filters on: its value is the stack name.
STACK_TAG_KEY = "Stack"


def tag_filter_value(key: str, value: str) -> str:
    """A user-defined tag as a Budgets `TagKeyValue` cost-filter value."""
    return f"user:{key}${value}"


def budget_name(stack_name: str) -> str:
    """Unique per account (budget names are), like the stack's name."""
    return f"{stack_name}-monthly"


def notifications(config: BudgetConfig) -> list[dict[str, Any]]:
    """One notification per threshold and kind: actual spend, and AWS's forecast for the month."""
    return [
        {
            "comparison_operator": "GREATER_THAN",
            "threshold": float(percent),
            "threshold_type": "PERCENTAGE",
            "notification_type": kind,
            "subscriber_email_addresses": list(config.emails),
        }
        for percent in config.thresholds
        for kind in NOTIFICATION_TYPES
    ]


def budget_args(stack_name: str, stack: str, config: BudgetConfig) -> dict[str, Any]:
    """aws.budgets.Budget inputs: a monthly COST budget in USD on `Stack=<stack>`."""
    return {
        "name": budget_name(stack_name),
        "budget_type": "COST",
        "time_unit": "MONTHLY",
        "limit_amount": config.limit_amount,
        "limit_unit": "USD",
        "cost_filters": [{"name": "TagKeyValue", "values": [tag_filter_value(STACK_TAG_KEY, stack)]}],
        "notifications": notifications(config),
    }


def placeholder_email_error(
    emails: Sequence[str], account_id: str, placeholder_account: str
) -> ConfigError | None:
    """An alert address on a documentation domain, deployed into a real account: refused at preview (the
    alerts would go nowhere), as the stack files' placeholder admin ARNs are (infra/aws/live.py)."""
    if account_id == placeholder_account:
        return None
    for i, address in enumerate(emails):
        if is_placeholder_email(address):
            return ConfigError(
                f"{PROJECT}:budget.emails[{i}]",
                address,
                f"is the stack file's placeholder (a documentation domain); this deploy runs in account "
                f"{account_id}: list the addresses that should receive the budget's alerts",
            )
    return None


class CostBudget(AwsComponent):
    TYPE = "adaptive-dask:aws:CostBudget"

    def __init__(self, name: str, stack: str, config: BudgetConfig, provider: aws.Provider) -> None:
        super().__init__(name, provider)
        self.budget = aws.budgets.Budget(
            f"{name}-budget", **budget_args(name, stack, config), opts=self._opts()
        )
        self.name: pulumi.Output[str] = self.budget.name
        self.register_outputs({"name": self.name})
