"""The one password check every form that takes a mailbox's password makes: the
login form and the webmail's password change.

The password is checked against the tenant's own hash (the server's spec names the
Secret it is in), and the answer takes as long whether the address is unknown, its
server is gone since the directory listed it, the mailbox has no hash, or the
password is wrong: each of those still costs a bcrypt check. The attempts they may
make are `Panel.login_wait`'s (one budget per address and per client).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from vpes_operator import crypto

from .customer import Customer
from .directory import Home
from .web import Panel

# Checked when there is no hash to check, so that the answer takes as long as a
# wrong password's.
DUMMY_HASH = crypto.hash_password(secrets.token_urlsafe(16), 10)


@dataclass(frozen=True)
class Verified:
    """A mailbox whose password was right: where it lives and its server as read."""

    home: Home
    customer: Customer
    server: dict[str, Any]
    hashed: str


def verify(panel: Panel, address: str, password: str) -> Verified | None:
    """`address`'s mailbox when `password` is its password, else None."""
    home = panel.directory.find(address)
    if home is not None:
        customer = panel.customer_at(home.namespace, home.server)
        try:
            server = customer.get()
        except LookupError:  # deleted since the directory was listed
            server = None
        hashed = customer.current_hash(server.get("spec") or {}, address) if server else None
        if server is not None and hashed:
            ok = crypto.verify_password(password, hashed)
            return Verified(home, customer, server, hashed) if ok else None
    crypto.verify_password(password, DUMMY_HASH)
    return None
