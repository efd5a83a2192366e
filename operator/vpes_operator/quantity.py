"""Byte quantities as Kubernetes writes them ("25Mi", "5Gi", "1G", "512") → bytes.

Only whole numbers of bytes are accepted: no fractions ("1.5Gi"), no milli
("500m"), no exponents ("1e9"), no signs, no spaces. That is what every size in
a MailPlan or PersonalMailServer may hold (``BYTES_PATTERN`` in models.common,
plus the P/E suffixes for completeness), so a value the API server accepted
always parses here.
"""

from __future__ import annotations

import re

__all__ = ["BINARY_SUFFIXES", "DECIMAL_SUFFIXES", "QuantityError", "parse_bytes"]

BINARY_SUFFIXES: dict[str, int] = {
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
}
DECIMAL_SUFFIXES: dict[str, int] = {
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "E": 1000**6,
}
_MULTIPLIERS: dict[str, int] = {"": 1, **BINARY_SUFFIXES, **DECIMAL_SUFFIXES}
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
    number, suffix = match.group(1), match.group(2) or ""
    return int(number) * _MULTIPLIERS[suffix]
