"""A mailbox user's OpenPGP public key on their page: the key they published (its
fingerprint and user IDs, as gpg reads them, and what is wrong with it now), and the
spec change that publishes or withdraws one.

The key is the mailbox's own `openpgpKey`, stored as `openpgp.armor` writes it after
`openpgp.check_key` accepted it; the Web Key Directory serves it from there. The key
is public, but its text is still never logged nor shown back: the page shows its
fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vpes_operator.models.server import MAX_OPENPGP_KEYS

from . import openpgp

JSON = dict[str, Any]


@dataclass(frozen=True)
class PublishedKey:
    fingerprint: str  # in groups of four; "" when gpg cannot read the stored key
    user_ids: tuple[str, ...]
    expires: str  # YYYY-MM-DD (UTC), "" for never
    warning: str  # why mail apps cannot use it now, "" when they can


def stored_key(spec: JSON, address: str) -> str | None:
    """The key `address`'s mailbox publishes, as stored (None: none)."""
    for mailbox in spec.get("mailboxes") or []:
        if mailbox.get("address") == address:
            value = mailbox.get("openpgpKey")
            return str(value) if value else None
    return None


def published(text: str, address: str, now: datetime) -> PublishedKey:
    """The stored key as its user reads it (gpg reads it: not pure)."""
    try:
        key = openpgp.inspect(text)
    except openpgp.KeyRefusedError as e:
        return PublishedKey("", (), "", f"The published key cannot be read: {e}")
    return PublishedKey(
        fingerprint=key.grouped_fingerprint,
        user_ids=key.user_ids,
        expires=key.expires.date().isoformat() if key.expires else "",
        warning=openpgp.problem(key, address, now) or "",
    )


def no_room(spec: JSON, address: str) -> str | None:
    """Why `address` cannot publish a key now (None: it can): the server publishes as
    many keys as it may already (the CRD's rule, said for a mailbox user)."""
    others = [
        m
        for m in spec.get("mailboxes") or []
        if m.get("openpgpKey") and m.get("address") != address
    ]
    if len(others) < MAX_OPENPGP_KEYS:
        return None
    return (
        f"This server already publishes {len(others)} OpenPGP keys, the most it may. Ask "
        "its administrators to have someone withdraw theirs, then publish yours."
    )


def set_key(spec: JSON, address: str, armored: str | None) -> None:
    """Mutate `spec` so that `address`'s mailbox publishes `armored` (None: no key)."""
    for mailbox in spec.get("mailboxes") or []:
        if mailbox.get("address") == address:
            if armored is None:
                mailbox.pop("openpgpKey", None)
            else:
                mailbox["openpgpKey"] = armored
