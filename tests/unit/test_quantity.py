"""Byte quantities ("25Mi") → bytes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from vpes_operator.models.common import BYTES_PATTERN
from vpes_operator.quantity import QuantityError, parse_bytes

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("1", 1),
        ("512", 512),
        ("1Ki", 1024),
        ("25Mi", 25 * 1024**2),
        ("512Mi", 536_870_912),
        ("1Gi", 1_073_741_824),
        ("5Gi", 5 * 1024**3),
        ("2Ti", 2 * 1024**4),
        ("1Pi", 1024**5),
        ("1Ei", 1024**6),
        ("300k", 300_000),
        ("25M", 25_000_000),
        ("1G", 1_000_000_000),
        ("3T", 3 * 10**12),
        ("1P", 10**15),
        ("1E", 10**18),
        ("007Mi", 7 * 1024**2),
    ],
)
def test_parses(value: str, expected: int) -> None:
    assert parse_bytes(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        " 1Gi",
        "1Gi ",
        "1 Gi",
        "-1",
        "+1",
        "1.5Gi",
        "500m",
        "1e9",
        "1K",  # Kubernetes writes k, not K
        "1KB",
        "1gi",
        "1GiB",
        "Gi",
        "1Mi1",
        "١٢",  # non-ASCII digits
    ],
)
def test_refuses(value: str) -> None:
    with pytest.raises(QuantityError, match="not a byte quantity"):
        parse_bytes(value)


@pytest.mark.parametrize("value", [None, 5, 1.5, b"1Gi"])
def test_refuses_non_strings(value: Any) -> None:
    with pytest.raises(QuantityError, match="must be a string"):
        parse_bytes(value)


@pytest.mark.parametrize(
    "value", ["1", "10Ki", "25Mi", "5Gi", "1Ti", "300k", "25M", "1G", "2T", "1024"]
)
def test_everything_the_schema_accepts_parses(value: str) -> None:
    assert re.fullmatch(BYTES_PATTERN, value)
    assert parse_bytes(value) >= 1


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 25Mi"):
        parse_bytes("lots")
