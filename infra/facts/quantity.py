"""Parsing of Kubernetes resource quantities and Go durations, as the CLI hands them to us.

Config values such as worker memory ("6Gi"), CPU ("1500m") and cluster-autoscaler timings ("10m") are
validated here, once, so a typo fails at config time instead of as a rejected Deployment or a
cluster-autoscaler that crash-loops on a bad flag.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^(?P<num>[0-9]+(\.[0-9]+)?)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNIT_SECONDS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),  # U+00B5 micro sign
    "μs": Decimal("1e-6"),  # U+03BC Greek mu; Go accepts both
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}

MIB = 2**20


def _split(text: str) -> tuple[Decimal, str]:
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    try:
        return Decimal(match["num"]), match["suffix"] or ""
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from exc


def parse_cpu_millicores(text: str) -> int:
    """'1.5' / '1500m' / '2' -> millicores; rejects memory-style suffixes (a '2Gi' CPU is a typo)."""
    number, suffix = _split(text)
    if suffix == "m":
        millis = number
    elif suffix == "":
        millis = number * 1000
    else:
        raise ValueError(f"CPU quantity must be cores ('2', '1.5') or millicores ('500m'): {text!r}")
    if millis != millis.to_integral_value():
        raise ValueError(f"CPU quantity finer than 1m: {text!r}")
    return int(millis)


def parse_memory_bytes(text: str) -> int:
    """'6Gi' / '512Mi' / '1G' / '1073741824' -> bytes; rejects 'm' (milli-bytes is always a typo)."""
    number, suffix = _split(text)
    if suffix == "m":
        raise ValueError(f"memory quantity with 'm' means milli-bytes; use 'Mi' or 'M': {text!r}")
    factor = _BINARY.get(suffix) or _DECIMAL.get(suffix) or 1
    value = number * factor
    if value != value.to_integral_value():
        raise ValueError(f"memory quantity is not a whole number of bytes: {text!r}")
    return int(value)


def parse_go_duration_seconds(text: str) -> Decimal:
    """Exactly what Go's `time.ParseDuration` accepts, as cluster-autoscaler flags take it: an optional
    sign, then '0' alone or numbers (digits with an optional fraction, either side of the point may be
    empty but not both) each followed by a unit ('10m', '1m30s', '.5h', '1.s', '-0')."""
    if not isinstance(text, str):
        raise ValueError(f"not a Go duration: {text!r}")
    body, sign = text, 1
    if body[:1] in ("-", "+"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    if body == "0":
        return Decimal(0)
    position, total = 0, Decimal(0)
    for match in _DURATION_PART.finditer(body):
        number = match[1]
        if match.start() != position or number in ("", "."):
            raise ValueError(f"not a Go duration: {text!r}")
        whole, _, fraction = number.partition(".")
        total += Decimal(f"{whole or 0}.{fraction or 0}") * _DURATION_UNIT_SECONDS[match[2]]
        position = match.end()
    if not body or position != len(body):
        raise ValueError(f"not a Go duration: {text!r}")
    return sign * total


def format_memory_mib(mib: int) -> str:
    """Canonical memory quantity used in manifests (whole MiB keeps requests and Dask's limit exact)."""
    return f"{mib}Mi"


def format_cpu_millicores(millicores: int) -> str:
    return f"{millicores}m"
