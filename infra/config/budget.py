"""`adaptive-dask:budget`: a monthly AWS Budget on the stack's own cost-allocation tag, with e-mail alerts.

Optional (off when the key is absent) and aws-only: `local` builds nothing that AWS bills. Recommended for
every stack that runs on AWS, production above all (docs/cost.md#seeing-the-bill). Every bad value is
refused here, naming the key, before anything is registered.

AWS limits that shape the checks: a budget has at most 10 notifications, and a notification at most 10
e-mail subscribers (Budgets API, `Notification` / `NotificationWithSubscribers`). Each threshold makes
two notifications (actual and forecasted spend), so at most 5 thresholds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from infra.config.reader import ConfigReader, Field

MAX_NOTIFICATIONS = 10  # per budget
NOTIFICATION_TYPES = ("ACTUAL", "FORECASTED")  # one notification of each per threshold
MAX_THRESHOLDS = MAX_NOTIFICATIONS // len(NOTIFICATION_TYPES)
MAX_EMAILS = 10  # e-mail subscribers per notification
MAX_THRESHOLD_PERCENT = 1000
MAX_EMAIL_LENGTH = 254
# `monthlyUsd` and `emails` have no default: set the key and they are required.
DEFAULT_BUDGET: dict[str, object] = {"monthlyUsd": None, "emails": None, "thresholds": [80, 100]}

# A practical address check (a local part of the common unquoted characters, a dotted domain of DNS
# labels): enough to catch typos, a missing domain, or two addresses pasted into one entry.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_RE = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_LABEL}(?:\.{_LABEL})+$")


@dataclass(frozen=True)
class BudgetConfig:
    monthly_usd: Decimal
    emails: tuple[str, ...]
    thresholds: tuple[Decimal, ...]  # percent of monthly_usd, ascending

    @property
    def limit_amount(self) -> str:
        """The limit as the Budgets API takes it: a decimal string, no exponent."""
        return format(self.monthly_usd.normalize(), "f")


# Reserved for documentation (RFC 2606): the committed stack files' alert addresses use them, and a deploy
# into a real account refuses them (infra/aws/live.py), as it refuses the files' placeholder admin ARNs.
PLACEHOLDER_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")


def is_placeholder_email(address: str) -> bool:
    domain = address.rsplit("@", 1)[-1].lower()
    return any(domain == d or domain.endswith(f".{d}") for d in PLACEHOLDER_EMAIL_DOMAINS)


def _number(field: Field) -> Decimal | None:
    """A finite number from YAML or the CLI (`500`, `12.5`, `"500"`); None when it is not one."""
    value = field.value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def monthly_usd(field: Field) -> Decimal:
    amount = _number(field)
    if amount is None or amount <= 0:
        raise field.fail("must be a number of US dollars above 0 (e.g. 500 or 1200.50)")
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise field.fail("must be whole cents at most (two decimals)")
    return amount


def emails(field: Field) -> tuple[str, ...]:
    if field.value is None:
        raise field.fail(f"required: a list of 1 to {MAX_EMAILS} e-mail addresses to alert")
    items = field.items()
    if not 1 <= len(items) <= MAX_EMAILS:
        raise field.fail(f"must list 1 to {MAX_EMAILS} e-mail addresses (AWS's subscribers per notification)")
    found: list[str] = []
    for item in items:
        address = item.string()
        if len(address) > MAX_EMAIL_LENGTH or not EMAIL_RE.match(address):
            raise item.fail("must be an e-mail address such as finops@your-company.com")
        if address.lower() in (a.lower() for a in found):
            raise item.fail("duplicate e-mail address")
        found.append(address)
    return tuple(found)


def thresholds(field: Field) -> tuple[Decimal, ...]:
    items = field.items()
    if not 1 <= len(items) <= MAX_THRESHOLDS:
        raise field.fail(
            f"must list 1 to {MAX_THRESHOLDS} percentages: each makes an actual and a forecasted alert, "
            f"and AWS allows {MAX_NOTIFICATIONS} notifications per budget"
        )
    values: list[Decimal] = []
    for item in items:
        percent = _number(item)
        if percent is None or not 0 < percent <= MAX_THRESHOLD_PERCENT:
            raise item.fail(f"must be a percentage of monthlyUsd above 0 and at most {MAX_THRESHOLD_PERCENT}")
        if percent in values:
            raise item.fail("duplicate threshold")
        values.append(percent)
    return tuple(sorted(values))


def parse_budget(cfg: ConfigReader, target: str) -> BudgetConfig | None:
    """`adaptive-dask:budget`, or None when unset. AWS target only."""
    if not cfg.is_set("budget"):
        return None
    if target != "aws":
        raise cfg.raw("budget", None).fail("needs target aws (an AWS Budget); the local target bills nothing")
    s = cfg.section("budget", DEFAULT_BUDGET)
    if s.values["monthlyUsd"] is None:
        raise s["monthlyUsd"].fail("required: the monthly limit in US dollars, above 0")
    return BudgetConfig(
        monthly_usd=monthly_usd(s["monthlyUsd"]),
        emails=emails(s["emails"]),
        thresholds=thresholds(s["thresholds"]),
    )
