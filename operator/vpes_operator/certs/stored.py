"""A certificate kept in a kubernetes.io/tls Secret, and what to do about it: pure.

The Secret is the record: which names its certificate covers and until when is read
from the certificate itself (`read`), so a restarted operator, or another replica,
never orders again what is already there. `decide` says whether to order: none yet,
other names than wanted, or renewal due (`renewal.due`, seeded by the serial).
`backoff` says how long a failed order waits before the next attempt.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from cryptography import x509

from . import renewal
from .errors import CertError, RateLimitedError
from .issuer import Issued, normalise_names

TLS_TYPE = "kubernetes.io/tls"
CERT_FIELD = "tls.crt"
KEY_FIELD = "tls.key"
# A failed order waits its error's retry time, doubled at each further failure, up to
# a day (a CA's limits count failed orders too); never less than a minute.
MIN_BACKOFF = 60.0
MAX_BACKOFF = 24 * 3600.0


@dataclass(frozen=True)
class Stored:
    """The leaf certificate a Secret holds: its names and validity."""

    names: frozenset[str]
    not_before: datetime
    not_after: datetime
    serial: str

    def covers(self, names: Sequence[str]) -> bool:
        return self.names == frozenset(normalise_names(names))

    def valid(self, now: datetime) -> bool:
        return self.not_before <= now < self.not_after


class Action(StrEnum):
    ISSUE = "issue"  # no certificate yet (or one that cannot be read)
    REISSUE = "reissue"  # one for other names
    RENEW = "renew"  # the right names, renewal due
    KEEP = "keep"


def read(secret: Mapping[str, Any] | None) -> Stored | None:
    """The certificate in a Secret's tls.crt (None: no Secret, no or no readable one)."""
    raw = ((secret or {}).get("data") or {}).get(CERT_FIELD)
    if not raw:
        return None
    try:
        leaf = x509.load_pem_x509_certificate(base64.b64decode(raw, validate=True))
    except (ValueError, binascii.Error):
        return None
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = frozenset(n.lower() for n in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = frozenset()
    return Stored(
        names, leaf.not_valid_before_utc, leaf.not_valid_after_utc, f"{leaf.serial_number:x}"
    )


def decide(names: Sequence[str], stored: Stored | None, now: datetime, fraction: float) -> Action:
    """What to do for a certificate of `names`, given what the Secret holds."""
    if stored is None:
        return Action.ISSUE
    if not stored.covers(names):
        return Action.REISSUE
    try:
        due = renewal.due(now, stored.not_before, stored.not_after, fraction, stored.serial)
    except ValueError:  # ends before it starts: nothing to keep
        return Action.RENEW
    return Action.RENEW if due else Action.KEEP


def backoff(error: CertError, attempts: int) -> float:
    """Seconds before order number `attempts + 1` after `attempts` failed in a row.

    A rate limit waits what the CA said (at least a minute); anything else its
    kind's retry time, doubled at each further failure, up to a day."""
    if isinstance(error, RateLimitedError):
        return max(MIN_BACKOFF, error.retry_seconds)
    grown = error.retry_seconds * 2.0 ** max(0, attempts - 1)
    return max(MIN_BACKOFF, min(grown, MAX_BACKOFF))


def secret_body(
    name: str, namespace: str, labels: Mapping[str, str], issued: Issued
) -> dict[str, Any]:
    """The kubernetes.io/tls Secret of a certificate: the chain (leaf first) and its key."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "type": TLS_TYPE,
        "data": {CERT_FIELD: b64(issued.chain_pem), KEY_FIELD: b64(issued.key_pem)},
    }
