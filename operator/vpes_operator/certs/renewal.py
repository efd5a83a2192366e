"""When a certificate is renewed: a pure function of its validity and the settings.

A certificate is renewed once less than `fraction` of its lifetime is left
(a third by default, as Let's Encrypt advises), a little earlier by a jitter
that spreads the renewals of a fleet whose certificates were issued together.
The jitter is drawn from a seed (the certificate's serial number), so one
certificate's renewal time is the same at every reconcile and after a restart,
and it is bounded: never more than `jitter_fraction` of the lifetime, and
never before the certificate's start.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from cryptography import x509

DEFAULT_JITTER_FRACTION = 0.05


def _unit(seed: str) -> float:
    """A number in [0, 1) that depends only on `seed`."""
    digest = hashlib.sha256(seed.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def renewal_time(
    not_before: datetime,
    not_after: datetime,
    fraction: float,
    seed: str,
    jitter_fraction: float = DEFAULT_JITTER_FRACTION,
) -> datetime:
    """When to renew: `fraction` of the lifetime before the end, minus a bounded jitter."""
    if not 0 < fraction < 1:
        raise ValueError(f"the renewal fraction must be between 0 and 1, not {fraction}")
    if not 0 <= jitter_fraction < 1:
        raise ValueError(f"the jitter fraction must be in [0, 1), not {jitter_fraction}")
    lifetime = not_after - not_before
    if lifetime <= timedelta(0):
        raise ValueError(f"the certificate ends ({not_after}) before it starts ({not_before})")
    jitter = min(jitter_fraction, 1 - fraction) * _unit(seed)
    return not_after - lifetime * (fraction + jitter)


def due(
    now: datetime,
    not_before: datetime,
    not_after: datetime,
    fraction: float,
    seed: str,
    jitter_fraction: float = DEFAULT_JITTER_FRACTION,
) -> bool:
    """Whether a certificate valid from `not_before` to `not_after` is renewed now."""
    return now >= renewal_time(not_before, not_after, fraction, seed, jitter_fraction)


def certificate_due(
    cert_pem: bytes,
    now: datetime,
    fraction: float,
    jitter_fraction: float = DEFAULT_JITTER_FRACTION,
) -> bool:
    """`due` for the first (leaf) certificate of a PEM chain, seeded by its serial number."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return due(
        now,
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        fraction,
        f"{cert.serial_number:x}",
        jitter_fraction,
    )
