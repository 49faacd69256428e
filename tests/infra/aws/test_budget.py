"""The stack's AWS Budget (infra/aws/budget.py) as the real program registers it for the committed stacks:
a monthly COST budget in USD on `user:Stack$<stack>`, an actual and a forecasted alert per threshold to
the listed addresses; none without the key; placeholder addresses refused in a real account."""

from __future__ import annotations

import json

import pytest

from infra.aws.budget import budget_name, tag_filter_value
from infra.config.budget import DEFAULT_BUDGET
from infra.errors import ConfigError
from testbed.infra.harness import Graph, RecordingMocks, registered_before_failure, run_stack, stack_value

NS = "adaptive-dask"
BUDGET = "aws:budgets/budget:Budget"


def expected(stack: str) -> dict:
    return {**DEFAULT_BUDGET, **stack_value(stack, f"{NS}:budget")}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_committed_stacks_budget(stack: str, stack_graph) -> None:
    g: Graph = stack_graph(stack)
    want = expected(stack)
    [budget] = g.of_type(BUDGET)
    name = f"adask-{stack}"
    assert budget.inputs["name"] == budget_name(name) == f"{name}-monthly"
    assert (budget.inputs["budgetType"], budget.inputs["timeUnit"], budget.inputs["limitUnit"]) == (
        "COST",
        "MONTHLY",
        "USD",
    )
    assert float(budget.inputs["limitAmount"]) == want["monthlyUsd"]
    assert budget.inputs["costFilters"] == [{"name": "TagKeyValue", "values": [f"user:Stack${stack}"]}]
    # The filter names a tag every billable resource carries (test_cost_tags.py), with this value.
    assert json.loads(g.one("pulumi:providers:aws").inputs["defaultTags"])["tags"]["Stack"] == stack
    notes = budget.inputs["notifications"]
    assert len(notes) == 2 * len(want["thresholds"])
    assert {(n["threshold"], n["notificationType"]) for n in notes} == {
        (float(t), kind) for t in want["thresholds"] for kind in ("ACTUAL", "FORECASTED")
    }
    for n in notes:
        assert (n["comparisonOperator"], n["thresholdType"]) == ("GREATER_THAN", "PERCENTAGE")
        assert n["subscriberEmailAddresses"] == want["emails"]
    assert budget.provider_urn == g.one("pulumi:providers:aws").urn
    assert g.exports["budgetName"] == f"{name}-monthly"


def test_no_budget_without_the_key(stack_graph) -> None:
    g = stack_graph("dev", overrides={f"{NS}:budget": ""})
    assert g.of_type(BUDGET) == [] and "budgetName" not in g.exports


def test_production_without_a_budget_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    import infra.program

    said: list[str] = []
    monkeypatch.setattr(infra.program.pulumi.log, "warn", lambda msg, *a, **k: said.append(msg))
    run_stack("prod", overrides={f"{NS}:budget": ""})
    assert any("adaptive-dask:budget is not set" in m for m in said)


def test_tag_filter_format() -> None:
    assert tag_filter_value("Stack", "prod") == "user:Stack$prod"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_placeholder_addresses_stop_the_run_in_a_real_account(stack: str) -> None:
    """The stack files' example.com addresses, deployed into a real account, are refused at preview
    (once the placeholder admin ARNs have been replaced, which the same check refuses first)."""
    real = "444455556666"
    mocks = RecordingMocks(region=stack_value(stack, "aws:region"))
    mocks.invokes["aws:index/getCallerIdentity:getCallerIdentity"] = lambda a: {
        "id": real,
        "accountId": real,
        "arn": f"arn:aws:sts::{real}:assumed-role/deployer/ci-session",
        "userId": "AROAEXAMPLE:ci-session",
    }
    cluster = {
        **stack_value(stack, f"{NS}:cluster"),
        "adminArns": [f"arn:aws:iam::{real}:role/deploy"],
        "previewArns": [f"arn:aws:iam::{real}:role/preview"],
    }
    error, registered = registered_before_failure(stack, mocks, {f"{NS}:cluster": json.dumps(cluster)})
    assert isinstance(error, ConfigError) and error.key == f"{NS}:budget.emails[0]"
    assert error.value == expected(stack)["emails"][0] and "placeholder" in error.allowed
    assert registered == ["pulumi:providers:aws"]
