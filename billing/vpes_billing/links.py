"""One-time links that let a customer set the first mailbox's password.

The token is shown once, to the browser that paid (it is never emailed and
never logged); the cluster keeps only its SHA-256, in a Secret in the
customer's namespace, with its expiry. Using the link deletes that Secret
with a resourceVersion precondition first, so two concurrent uses cannot
both succeed, and only then writes the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from vpes_operator import API_VERSION
from vpes_operator import naming as operator_naming
from vpes_operator.clients.kube import ApiError, Kube
from vpes_panel import passwords

from . import naming as n

TOKEN = re.compile(r"^(vpes-c-[0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")
# Dovecot's cost for the hash the link stores (the operator's default, VPES_BCRYPT_ROUNDS).
HASH_ROUNDS = 10


class LinkError(Exception):
    """The link cannot be used; the message is for the customer."""


@dataclass(frozen=True)
class Link:
    namespace: str
    mailbox: str
    expires_at: float


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _text(obj: dict[str, object], key: str) -> str:
    data = obj.get("data") or {}
    assert isinstance(data, dict)
    raw = data.get(key)
    return base64.b64decode(raw).decode() if isinstance(raw, str) else ""


def issue(kube: Kube, namespace: str, mailbox: str, ttl_seconds: float) -> str | None:
    """A new token, or None if a link was already issued for this server."""
    secret = secrets.token_urlsafe(32)
    expires = int(time.time() + ttl_seconds)
    try:
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": n.PASSWORD_LINK_SECRET,
                    "namespace": namespace,
                    "labels": {n.LABEL_MANAGED_BY: n.MANAGED_BY},
                },
                "type": "Opaque",
                "stringData": {
                    "sha256": _hash(secret),
                    "mailbox": mailbox,
                    "expires": str(expires),
                },
            }
        )
    except ApiError as e:
        if e.status == 409:
            return None
        raise
    return f"{namespace}.{secret}"


def inspect(kube: Kube, token: str) -> tuple[Link, str]:
    """The link a token stands for, and the Secret's resourceVersion; LinkError if none."""
    m = TOKEN.fullmatch(token)
    if not m:
        raise LinkError("This link is not valid.")
    namespace, secret = m.groups()
    obj = kube.get("v1", "Secret", namespace, n.PASSWORD_LINK_SECRET)
    if obj is None or _text(obj, "used") == "true":
        raise LinkError("This link has already been used or has been withdrawn.")
    if not hmac.compare_digest(_text(obj, "sha256"), _hash(secret)):
        raise LinkError("This link is not valid.")
    expires = float(_text(obj, "expires") or 0)
    if time.time() > expires:
        raise LinkError("This link has expired. Ask support for a new one.")
    return Link(namespace, _text(obj, "mailbox"), expires), str(obj["metadata"]["resourceVersion"])


def _hashed(password: str) -> str:
    return passwords.hashed(password, HASH_ROUNDS)


def check_password(password: str, confirm: str, mailbox: str) -> None:
    """The panel's rules for a new password (length, the breached list, zxcvbn)."""
    try:
        passwords.check(password, confirm, context=passwords.context_words(mailbox))
    except passwords.WeakPasswordError as e:
        raise LinkError(str(e)) from e


def use(kube: Kube, token: str, password: str, confirm: str) -> Link:
    """Set the mailbox password through the link, exactly once."""
    link, version = inspect(kube, token)
    check_password(password, confirm, link.mailbox)
    try:
        deleted = kube.delete(
            "v1", "Secret", link.namespace, n.PASSWORD_LINK_SECRET, resource_version=version
        )
    except ApiError as e:
        if e.status == 409:
            raise LinkError("This link has already been used.") from e
        raise
    if not deleted:
        raise LinkError("This link has already been used.")
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": n.FIRST_PASSWORD_SECRET, "namespace": link.namespace},
            # Hashed here: the password itself is never stored (the operator takes a hash).
            "data": {"password": base64.b64encode(_hashed(password).encode()).decode()},
        }
    )
    # The operator watches no Secret: the server's annotation makes it take the new
    # hash now (the tenant's logins and the panel's), not at its next resync.
    try:
        kube.patch_metadata(
            API_VERSION,
            "PersonalMailServer",
            link.namespace,
            n.SERVER_NAME,
            {"annotations": {operator_naming.ANNOTATION_PASSWORDS_CHANGED: secrets.token_hex(8)}},
        )
    except ApiError as e:
        if e.status != 404:  # a server deleted meanwhile has nothing to take up
            raise
    return link
