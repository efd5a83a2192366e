"""Byte quantities as Kubernetes writes them ("25Mi", "5Gi", "1G", "512") → bytes.

The arithmetic is the official client's (``kubernetes.utils.parse_quantity``);
this module only narrows the syntax to whole numbers of bytes: no fractions
("1.5Gi"), no milli ("500m"), no exponents ("1e9"), no signs, no spaces. That
is what every size in a MailPlan or PersonalMailServer may hold
(``BYTES_PATTERN`` in models.common, plus the P/E suffixes for completeness),
so a value the API server accepted always parses here.
"""

from __future__ import annotations

import re

from kubernetes.utils import parse_quantity

__all__ = ["QuantityError", "parse_bytes"]

_BYTES_RE = re.compile(r"([0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")


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
    return int(parse_quantity(value))  # type: ignore[no-untyped-call]
