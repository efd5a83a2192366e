"""Kubernetes quantities: the project's one parser.

``parse_quantity`` is the official client's (``kubernetes.utils.parse_quantity``),
typed. ``parse_bytes`` turns byte quantities as Kubernetes writes them ("25Mi",
"5Gi", "1G", "512") into bytes with that arithmetic, and only narrows the syntax
to whole numbers of bytes: no fractions ("1.5Gi"), no milli ("500m"), no
exponents ("1e9"), no signs, no spaces. That is what every size in a MailPlan or
PersonalMailServer may hold (``BYTES_PATTERN`` in models.common, plus the P/E
suffixes for completeness), so a value the API server accepted always parses here.
"""

from __future__ import annotations

import re
from decimal import Decimal

import kubernetes.utils

__all__ = ["QuantityError", "parse_bytes", "parse_quantity"]

_BYTES_RE = re.compile(r"([0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")


def parse_quantity(value: str | int | float) -> Decimal:
    """The exact value of any quantity ("10Gi", "500m", "1.5e3", 2000); ValueError if
    `value` is not one. The official client's parser, typed."""
    result: Decimal = kubernetes.utils.parse_quantity(value)  # type: ignore[no-untyped-call]
    return result


class QuantityError(ValueError):
    """A string that is not a whole number of bytes in Kubernetes quantity syntax."""


def parse_bytes(value: str) -> int:
    """Return the number of bytes a quantity such as "25Mi" or "1G" stands for.

    >>> parse_bytes("25Mi")
    26214400
    >>> parse_bytes("1G")
    1000000000
    """
    if not isinstance(value, str):
        raise QuantityError(f"a byte quantity must be a string, not {type(value).__name__}")
    match = _BYTES_RE.fullmatch(value)
    if match is None:
        raise QuantityError(
            f"{value!r} is not a byte quantity: write a whole number with an optional "
            "suffix (Ki, Mi, Gi, Ti, Pi, Ei or k, M, G, T, P, E), e.g. 25Mi"
        )
    return int(parse_quantity(value))
