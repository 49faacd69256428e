"""`adaptive-dask:budget` (infra/config/budget.py): parsed as the CLI hands it over, and every bad value
refused with a ConfigError naming the key, before anything is registered."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from infra.config.budget import MAX_EMAILS, MAX_THRESHOLDS, is_placeholder_email
from infra.config.load import load_settings
from infra.config.settings import Settings
from infra.errors import ConfigError
from testbed.infra.harness import install, run_program

NS = "adaptive-dask"
KEY = f"{NS}:budget"
GOOD = {"monthlyUsd": 500, "emails": ["finops@corp.test"]}


def settings(budget: object, **extra: str) -> Settings:
    config = {KEY: budget if isinstance(budget, str) else json.dumps(budget), **extra}
    install(stack="test", config=config)
    return run_program(load_settings)


def test_unset_means_no_budget() -> None:
    install(stack="test", config={})
    assert run_program(load_settings).budget is None


def test_values_as_the_cli_hands_them_over() -> None:
    s = settings(
        {
            "monthlyUsd": "1200.50",
            "emails": ["a@corp.test", "b.c+dask@x.corp.test"],
            "thresholds": ["100", 50.5],
        }
    )
    assert s.budget is not None
    assert s.budget.monthly_usd == Decimal("1200.50") and s.budget.limit_amount == "1200.5"
    assert s.budget.emails == ("a@corp.test", "b.c+dask@x.corp.test")
    assert s.budget.thresholds == (Decimal("50.5"), Decimal("100"))  # ascending


def test_default_thresholds() -> None:
    s = settings(GOOD)
    assert s.budget is not None and s.budget.thresholds == (Decimal(80), Decimal(100))
    assert settings({**GOOD, "monthlyUsd": 1e3}).budget.limit_amount == "1000"  # type: ignore[union-attr]


def _bad(case: str, budget: object, key: str, value: object, allowed: str, **extra: str) -> object:
    return pytest.param(budget, extra, key, value, allowed, id=case)


@pytest.mark.parametrize(
    ("budget", "extra", "key", "value", "allowed"),
    [
        _bad("zero", {**GOOD, "monthlyUsd": 0}, "monthlyUsd", 0, "above 0"),
        _bad("negative", {**GOOD, "monthlyUsd": "-5"}, "monthlyUsd", "-5", "above 0"),
        _bad("not a number", {**GOOD, "monthlyUsd": "lots"}, "monthlyUsd", "lots", "number of US dollars"),
        _bad("bool", {**GOOD, "monthlyUsd": True}, "monthlyUsd", True, "number of US dollars"),
        _bad("nan", {**GOOD, "monthlyUsd": "NaN"}, "monthlyUsd", "NaN", "number of US dollars"),
        _bad("infinite", {**GOOD, "monthlyUsd": "Infinity"}, "monthlyUsd", "Infinity", "number"),
        _bad("sub-cent", {**GOOD, "monthlyUsd": 10.001}, "monthlyUsd", 10.001, "two decimals"),
        _bad("missing limit", {"emails": ["a@corp.test"]}, "monthlyUsd", None, "required"),
        _bad("missing emails", {"monthlyUsd": 5}, "emails", None, "required"),
        _bad("no emails", {**GOOD, "emails": []}, "emails", [], f"1 to {MAX_EMAILS}"),
        _bad("too many emails", {**GOOD, "emails": [f"a{i}@corp.test" for i in range(11)]}, "emails",
             [f"a{i}@corp.test" for i in range(11)], f"1 to {MAX_EMAILS}"),
        _bad("not a list", {**GOOD, "emails": "a@corp.test"}, "emails", "a@corp.test", "must be a list"),
        _bad("no domain", {**GOOD, "emails": ["finops"]}, "emails[0]", "finops", "e-mail address"),
        _bad("no dot", {**GOOD, "emails": ["a@localhost"]}, "emails[0]", "a@localhost", "e-mail address"),
        _bad("two in one", {**GOOD, "emails": ["a@corp.test, b@corp.test"]}, "emails[0]",
             "a@corp.test, b@corp.test", "e-mail address"),
        _bad("space", {**GOOD, "emails": [" a@corp.test"]}, "emails[0]", " a@corp.test", "e-mail address"),
        _bad("duplicate email", {**GOOD, "emails": ["a@corp.test", "A@corp.test"]}, "emails[1]",
             "A@corp.test", "duplicate"),
        _bad("threshold zero", {**GOOD, "thresholds": [0]}, "thresholds[0]", 0, "above 0 and at most 1000"),
        _bad("threshold high", {**GOOD, "thresholds": [80, 1001]}, "thresholds[1]", 1001, "at most 1000"),
        _bad("threshold text", {**GOOD, "thresholds": ["most"]}, "thresholds[0]", "most", "percentage"),
        _bad("no thresholds", {**GOOD, "thresholds": []}, "thresholds", [], f"1 to {MAX_THRESHOLDS}"),
        _bad("too many thresholds", {**GOOD, "thresholds": [10, 20, 30, 40, 50, 60]}, "thresholds",
             [10, 20, 30, 40, 50, 60], "10 notifications per budget"),
        _bad("duplicate threshold", {**GOOD, "thresholds": [80, "80"]}, "thresholds[1]", "80", "duplicate"),
        _bad("unknown field", {**GOOD, "monthly": 5}, "monthly", 5, "unknown field"),
        _bad("not an object", "[1]", "", [1], "must be an object"),
        _bad("bad json", "{", "", "{", "valid JSON"),
        _bad("local target", GOOD, "", json.dumps(GOOD), "needs target aws", **{f"{NS}:target": "local"}),
    ],
)  # fmt: skip
def test_bad_budget_is_refused_naming_the_key(
    budget: object, extra: dict[str, str], key: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(budget, **extra)
    assert caught.value.key == (f"{KEY}.{key}" if key else KEY)
    assert caught.value.value == value
    assert allowed in caught.value.allowed


def test_unknown_top_level_key_near_budget_is_a_typo() -> None:
    install(stack="test", config={f"{NS}:budgt": json.dumps(GOOD)})
    with pytest.raises(ConfigError) as caught:
        run_program(load_settings)
    assert caught.value.key == f"{NS}:budgt" and f"did you mean {KEY}?" in caught.value.allowed


def test_placeholder_domains() -> None:
    assert is_placeholder_email("alerts@example.com")
    assert is_placeholder_email("alerts@Team.EXAMPLE.org")
    assert not is_placeholder_email("alerts@example.company.com")
    assert not is_placeholder_email("alerts@notexample.com")
