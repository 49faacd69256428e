"""Quantity and duration parsing used by the Kubernetes-layer config."""

from __future__ import annotations

from decimal import Decimal

import pytest

from infra.facts.quantity import parse_cpu_millicores, parse_go_duration_seconds, parse_memory_bytes


@pytest.mark.parametrize(("text", "millis"), [("2", 2000), ("1.5", 1500), ("500m", 500), ("0.25", 250)])
def test_cpu(text, millis):
    assert parse_cpu_millicores(text) == millis


@pytest.mark.parametrize("text", ["2Gi", "1.0005", "abc", "", "-1", "1 core"])
def test_cpu_rejects(text):
    with pytest.raises(ValueError):
        parse_cpu_millicores(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1Gi", 1 << 30), ("512Mi", 512 << 20), ("1G", 10**9), ("1000", 1000), ("1.5Gi", 3 << 29), ("2k", 2000)],
)
def test_memory(text, size):
    assert parse_memory_bytes(text) == size


@pytest.mark.parametrize("text", ["1m", "1GB", "lots", "1.5", "-1Gi"])
def test_memory_rejects(text):
    with pytest.raises(ValueError):
        parse_memory_bytes(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10m", 600),
        ("90s", 90),
        ("1m30s", 90),
        ("1h", 3600),
        ("1.5m", 90),
        ("250ms", Decimal("0.25")),
        # What Go's time.ParseDuration also accepts (issue 10): a bare 0, signs, empty sides of the point.
        ("0", 0),
        ("+0", 0),
        ("-0", 0),
        (".5m", 30),
        ("1.s", 1),
        ("+2s", 2),
        ("-1s", -1),
        ("3μs", Decimal("3e-6")),
    ],
)
def test_go_duration(text, seconds):
    assert parse_go_duration_seconds(text) == Decimal(seconds)


@pytest.mark.parametrize(
    "text", ["10", "10 m", "10min", "m", "", " 1m", "1m x", "1d", ".", ".s", "00", "+", "1.5"]
)
def test_go_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_go_duration_seconds(text)
