"""What every page shares: the logged-in context, forms with field errors, rendering.

A page handler is `async def page(ctx: Context) -> Response`, wrapped by
`Panel.page(...)`: the wrapper reads and checks the session (signature, age,
that the password it was made with is still the mailbox's), refuses a POST
without the session's CSRF token or from another origin, refuses pages of the
whole server to a mailbox user, runs the handler, and sends the session back
with its new last-seen time. Blocking calls (the Kubernetes API, bcrypt) run
in a thread.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from vpes_billing.ratelimit import RateLimit
from vpes_operator.clients.kube import Kube

from . import sessions, totp
from .customer import Customer, totp_key
from .directory import Directory
from .sessions import Session, SessionCodec
from .settings import Settings

T = TypeVar("T")
NO_STORE = {"Cache-Control": "no-store"}
# Where a user without a second factor may go when the server requires one: their
# mailbox's page and its enrol form (logging out is no page).
ENROL_PATHS = frozenset({"/account", "/account/totp/enrol"})

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("vpes_panel", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass
class Form:
    """Submitted values and, per field, the message that says what to fix."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.values.get(name, "")

    def error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class Context:
    """One request of a logged-in person."""

    panel: Panel
    request: Request
    session: Session
    customer: Customer
    form: Form = field(default_factory=Form)

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        return await run_in_threadpool(call, *args)

    def render(self, template: str, title: str, status: int = 200, **values: Any) -> Response:
        return self.panel.render(
            template, title, status, session=self.session, form=self.form, **values
        )


def redirect(path: str) -> Response:
    return RedirectResponse(path, 303)


async def read_form(request: Request) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=200)
    return {
        k: v.strip() if k not in ("password", "confirm", "current") else v
        for k, v in form.items()
        if isinstance(v, str)
    }


Handler = Callable[[Context], Awaitable[Response]]


class Panel:
    """The panel's shared parts: settings, the API client, sessions, the directory."""

    def __init__(self, settings: Settings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self.codec = SessionCodec(
            settings.session_key, settings.session_idle_seconds, settings.session_max_seconds
        )
        self.directory = Directory(kube, settings.directory_seconds)
        # Password checks (the login form, the webmail's password change): per address
        # `login_burst` at once then one every `login_every_seconds`; per client
        # address four times as many. One budget, whichever way a guesser comes.
        self.by_address = RateLimit(settings.login_burst, settings.login_every_seconds)
        self.by_client = RateLimit(settings.login_burst * 4, settings.login_every_seconds / 4)

    def login_wait(self, address: str, client: str) -> float:
        """Seconds before a password of `address` from `client` may be tried (0: now);
        an attempt that may go now is counted."""
        return max(self.by_address.allow(address), self.by_client.allow(client))

    def customer(self, session: Session) -> Customer:
        return self.customer_at(session.namespace, session.server)

    def customer_at(self, namespace: str, server: str) -> Customer:
        return Customer(self.kube, namespace, server, self.settings.customer_service_account)

    def render(self, template: str, title: str, status: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("session", None)
        values.setdefault("form", Form())
        html = ENV.get_template(template).render(title=title, **values)
        return HTMLResponse(html, status, headers=NO_STORE)

    def set_cookie(self, response: Response, session: Session | None) -> Response:
        if session is None:
            response.delete_cookie(sessions.COOKIE, path="/")
            return response
        response.set_cookie(
            sessions.COOKIE,
            self.codec.encode(session),
            max_age=int(self.settings.session_max_seconds),
            path="/",
            secure=self.settings.secure_cookies,
            httponly=True,
            samesite="strict",
        )
        return response

    def same_origin(self, request: Request) -> bool:
        """A POST must come from the panel's own pages (Origin, else Referer)."""
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin:
            return True  # a browser always sends one on a cross-site POST
        return origin == self.settings.origin or origin.startswith(self.settings.origin + "/")

    def page(
        self, handler: Handler, *, admin: bool = False, stage: str = sessions.STAGE_IN
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = self.codec.decode(request.cookies.get(sessions.COOKIE))
            if session is None:
                return self.set_cookie(redirect("/login"), None)
            if session.stage != stage:
                return redirect("/login/totp" if session.stage == sessions.STAGE_TOTP else "/")
            if admin and not session.admin:
                return self.render(
                    "message.html",
                    "Not yours to manage",
                    403,
                    session=session,
                    text="Only the server's administrators manage this page.",
                )
            customer = self.customer(session)
            gate = await run_in_threadpool(self._gate, customer, session, request.url.path)
            if gate == "ended":
                return self.set_cookie(redirect("/login?ended=1"), None)
            if gate == "enrol":
                return redirect("/account?done=totp-required")
            ctx = Context(self, request, session, customer)
            if request.method == "POST":
                ctx.form.values = await read_form(request)
                token = ctx.form.values.get("csrf", "")
                if not self.same_origin(request) or not hmac.compare_digest(token, session.csrf):
                    return self.render(
                        "message.html",
                        "Refused",
                        403,
                        session=session,
                        text="This form is out of date. Open the page again.",
                    )
            response = await handler(ctx)
            return self.set_cookie(response, self.codec.touch(ctx.session))

        return endpoint

    @staticmethod
    def _gate(customer: Customer, session: Session, path: str) -> str | None:
        """ "ended" when the login's password is no longer the mailbox's (a change ends
        older sessions); "enrol" when the server requires a second factor
        (spec.panel.requireTOTP), the user has none yet and `path` is not where they
        enrol one; else None."""
        spec = customer.get().get("spec") or {}
        current = customer.current_hash(spec, session.user)
        if current is None or sessions.fingerprint(current) != session.fingerprint:
            return "ended"
        if path in ENROL_PATHS or not (spec.get("panel") or {}).get("requireTOTP"):
            return None
        enrolled = totp.Enrolment.load(customer.stored(totp_key(session.server, session.user)))
        return None if enrolled else "enrol"
