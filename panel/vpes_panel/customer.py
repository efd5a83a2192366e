"""Everything the panel reads or writes for a logged-in customer, as that customer.

Each call goes through the Kubernetes API impersonating the namespace's
`vpes-customer` ServiceAccount, whose role (chart: <release>-customer) reaches
only that namespace's servers, backups and restores and two Secrets
(`vpes-logins`: the tenant's password hashes, read only; `vpes-panel`: what the
panel stores, TOTP secrets and password hashes it set). So the API server
itself keeps one customer out of another's objects, whatever the panel's code
does. Spec changes carry the generation the form was made from: a change made
meanwhile (kubectl, a second tab) is a ConflictError, never overwritten.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import ApiError, Kube

from .settings import LOGINS_SECRET, PANEL_SECRET

JSON = dict[str, Any]
KIND = "PersonalMailServer"
# A spec write that loses to a status write is retried this many times in all.
CHANGE_ATTEMPTS = 4


class ConflictError(Exception):
    """The server changed since the form was shown; the message says what to do."""

    def __init__(self) -> None:
        super().__init__(
            "Someone changed this server's settings since you opened this page (in another "
            "tab or with kubectl). Nothing was saved. The page now shows the current "
            "settings: make your change again."
        )


@dataclass
class InvalidError(Exception):
    """The API server refused the change; `causes` are (field path, message) pairs."""

    message: str
    causes: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def _invalid(e: ApiError) -> InvalidError:
    try:
        doc = json.loads(e.body)
    except json.JSONDecodeError:
        doc = {}
    causes = [
        (str(c.get("field", "")), str(c.get("message", "")))
        for c in (doc.get("details") or {}).get("causes") or []
    ]
    return InvalidError(e.message, causes)


def user_key(address: str) -> str:
    """A Secret key for a mailbox: `alice_at_example.org` (domains hold no '_', so the
    last '_at_' splits it unambiguously)."""
    local, _, domain = address.partition("@")
    return f"{local}_at_{domain}"


def password_key(server: str, address: str) -> str:
    return f"password.{server}.{user_key(address)}"


def totp_key(server: str, address: str) -> str:
    return f"totp.{server}.{user_key(address)}"


class Customer:
    """One customer's view of the cluster: their namespace, as their ServiceAccount."""

    def __init__(self, kube: Kube, namespace: str, server: str, service_account: str) -> None:
        self.kube = kube.impersonate(f"system:serviceaccount:{namespace}:{service_account}")
        self.namespace = namespace
        self.server = server

    # -- the server ---------------------------------------------------------------

    def get(self) -> JSON:
        obj = self.kube.get(API_VERSION, KIND, self.namespace, self.server)
        if obj is None:
            raise LookupError(f"server {self.namespace}/{self.server} not found")
        return obj

    def change(self, generation: int, mutate: Callable[[JSON], None]) -> JSON:
        """Apply `mutate` to the spec as of `generation` and store it (PUT with the
        resourceVersion read): ConflictError if the spec moved on, InvalidError if the
        API server refuses the result. A write that lost only to a status or metadata
        change (the operator reporting, an annotation) is made again on the fresh
        object: only a change of the spec is the user's conflict."""
        path = self.kube.resource(API_VERSION, KIND).path(self.namespace, self.server)
        for _ in range(CHANGE_ATTEMPTS):
            obj = self.get()
            if int(obj["metadata"].get("generation") or 0) != generation:
                raise ConflictError
            mutate(obj["spec"])
            obj.pop("status", None)
            try:
                return self.kube.request(
                    "PUT", path, body=obj, query={"fieldManager": "vpes-panel"}
                )
            except ApiError as e:
                if e.status == 422:
                    raise _invalid(e) from e
                if e.status != 409:
                    raise
        raise ConflictError

    def annotate(self, key: str, value: str) -> None:
        """Set one annotation of the server (a merge patch of metadata only: the spec and
        its generation stay, so an open form is not made stale by it)."""
        path = self.kube.resource(API_VERSION, KIND).path(self.namespace, self.server)
        self.kube.request(
            "PATCH",
            path,
            body={"metadata": {"annotations": {key: value}}},
            content_type="application/merge-patch+json",
        )

    def spec_dry_run(self, mutate: Callable[[JSON], None]) -> None:
        """InvalidError if the API server would refuse `mutate`'s result (nothing is stored)."""
        obj = self.get()
        mutate(obj["spec"])
        obj.pop("status", None)
        path = self.kube.resource(API_VERSION, KIND).path(self.namespace, self.server)
        try:
            self.kube.request("PUT", path, body=obj, query={"dryRun": "All"})
        except ApiError as e:
            if e.status == 422:
                raise _invalid(e) from e
            raise

    # -- backups and restores -----------------------------------------------------

    def objects(self, kind: str) -> list[JSON]:
        """This server's MailBackups or MailRestores (those restoring into it), newest first."""
        items = self.kube.list(API_VERSION, kind, self.namespace)
        field = "target" if kind == "MailRestore" else "server"
        mine = [o for o in items if (o.get("spec") or {}).get(field) == self.server]
        return sorted(mine, key=lambda o: o["metadata"].get("creationTimestamp", ""), reverse=True)

    def create(self, obj: JSON) -> JSON:
        try:
            return self.kube.create(obj)
        except ApiError as e:
            if e.status == 422:
                raise _invalid(e) from e
            raise

    # -- secrets ------------------------------------------------------------------

    def logins(self) -> dict[str, str]:
        """The server's mailbox → password hash, as the tenant checks them."""
        obj = self.kube.get("v1", "Secret", self.namespace, LOGINS_SECRET)
        raw = ((obj or {}).get("data") or {}).get(f"{self.server}.json")
        if not raw:
            return {}
        doc = json.loads(base64.b64decode(raw))
        return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    def current_hash(self, spec: JSON, address: str) -> str | None:
        """The hash a login of `address` is checked against: the one the panel stored for
        it when the mailbox's password is the panel's (the tenant has it within seconds),
        else the tenant's own (vpes-logins). None: no such mailbox, or no password yet."""
        for mailbox in spec.get("mailboxes") or []:
            if mailbox.get("address") != address:
                continue
            ref = mailbox.get("passwordSecretRef") or {}
            if ref.get("name") == PANEL_SECRET:
                value = self.stored(str(ref.get("key", "")))
                if value and value.startswith("{"):
                    return value
            return self.logins().get(address)
        return None

    def stored(self, key: str) -> str | None:
        obj = self.kube.get("v1", "Secret", self.namespace, PANEL_SECRET)
        raw = ((obj or {}).get("data") or {}).get(key)
        return base64.b64decode(raw).decode() if raw else None

    def store(self, values: dict[str, str | None]) -> None:
        """Set (or, with None, remove) keys of the panel's Secret; other keys stay. A
        password hash set is announced on the server (ANNOTATION_PASSWORDS_CHANGED): the
        operator watches no Secret, the server's change makes it take the hash."""
        data = {
            k: (None if v is None else base64.b64encode(v.encode()).decode())
            for k, v in values.items()
        }
        self.kube.request(
            "PATCH",
            self.kube.resource("v1", "Secret").path(self.namespace, PANEL_SECRET),
            body={"data": data},
            content_type="application/merge-patch+json",
        )
        if any(k.startswith("password.") and v is not None for k, v in values.items()):
            self.annotate(naming.ANNOTATION_PASSWORDS_CHANGED, secrets.token_hex(8))
