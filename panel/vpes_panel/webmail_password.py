"""The webmail's password change: the endpoint Roundcube's password plugin calls.

POST form fields `address`, `current` and `new` (application/x-www-form-urlencoded);
200 when the password is changed, else 4xx with a text/plain body, the message the
webmail shows its user. The rules are the panel's own (routes/account.py): the
current password is checked as the panel's login checks it (the tenant's hash, the
login's attempt limits per address and per client, the same answer whether the
address exists or the password is wrong), the new one must pass `passwords.check`
with the same messages, and it is stored the same way, as the customer's
vpes-customer ServiceAccount (`account.set_password`: the panel's Secret, the
mailbox's passwordSecretRef, the passwords-changed annotation).

It has no CSRF token or Origin check: no browser posts it. Instead it is served
only on the panel's internal port (`build_internal_app`), never behind the
Ingress, and the chart's NetworkPolicy admits only the webmail's pods to that
port. The client whose attempts are counted is then the webmail pod: a guesser
there is slowed per address first, and everyone behind that pod shares its
(four times larger) budget.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from vpes_billing.web import BodyLimit

from . import logins, passwords
from .customer import ConflictError, InvalidError
from .routes.account import set_password
from .web import Panel

log = logging.getLogger("vpes.panel")
PATH = "/webmail/password"
CHANGED = "Your password is changed. Use the new one in your mail apps too."
MISSING = "Enter your current password and a new one."
WRONG = "This is not your current password."
CONFLICT = "Your mailbox's settings were being changed at the same moment. Try again."


class WrongPasswordError(Exception):
    """The address is unknown or `current` is not its password (one answer for both)."""


def _text(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(
        message, status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


class WebmailPassword:
    def __init__(self, panel: Panel) -> None:
        self.panel = panel

    def routes(self) -> list[Route]:
        return [Route(PATH, self.change, methods=["POST"])]

    async def change(self, request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=10)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        address = fields.get("address", "").strip().lower()
        current, new = fields.get("current", ""), fields.get("new", "")
        if not address or not current or not new:
            return _text(MISSING, 400)
        client = request.client.host if request.client else ""
        wait = self.panel.login_wait(address, client)
        if wait:
            seconds = int(wait) + 1
            return _text(
                f"Too many attempts. Try again in {seconds} seconds.",
                429,
                {"Retry-After": str(seconds)},
            )
        domain = address.partition("@")[2]
        try:
            await run_in_threadpool(self._change, address, current, new)
        except WrongPasswordError:
            log.info("webmail password change refused for a mailbox of %s", domain)
            return _text(WRONG, 403)
        except passwords.WeakPasswordError as e:
            return _text(str(e), 422)
        except ConflictError:
            return _text(CONFLICT, 409)
        except InvalidError as e:
            return _text(str(e), 422)
        log.info("webmail password changed for a mailbox of %s", domain)
        return _text(CHANGED, 200)

    def _verify(self, address: str, current: str) -> tuple[str, str, int]:
        """(namespace, server, generation) of the mailbox whose password `current` is
        (the login's own check); WrongPasswordError otherwise."""
        found = logins.verify(self.panel, address, current)
        if found is None:
            raise WrongPasswordError
        generation = int(found.server["metadata"].get("generation") or 0)
        return found.home.namespace, found.home.server, generation

    def _change(self, address: str, current: str, new: str) -> None:
        """The current password first (its answer says nothing of the new one), then
        the new one's strength, then the change."""
        namespace, server, generation = self._verify(address, current)
        passwords.check(new, new, context=passwords.context_words(address))
        hashed = passwords.hashed(new, self.panel.settings.bcrypt_rounds)
        set_password(self.panel.customer_at(namespace, server), address, generation, hashed)


def build_internal_app(panel: Panel) -> ASGIApp:
    """What the panel serves on its internal port: the webmail's password change only
    (and /healthz)."""

    async def healthz(request: Request) -> Response:
        return Response("ok")

    app = Starlette(routes=[Route("/healthz", healthz), *WebmailPassword(panel).routes()])
    return BodyLimit(app, panel.settings.max_body_bytes)
