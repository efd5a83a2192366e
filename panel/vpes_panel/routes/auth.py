"""Logging in and out: password (checked against the tenant's own hash), then, where
the user enrolled one, a TOTP code.

Attempts are limited per address and per client address (token buckets, so a
guesser is slowed and a person who mistyped is not locked out for long), and
each answer is the same whether the address exists or the password is wrong
(an unknown address still costs a bcrypt check). The login form's CSRF token
is a double-submitted cookie: there is no session yet to bind it to.
"""

from __future__ import annotations

import hmac
import logging
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import logins, sessions, totp
from ..customer import Customer, totp_key
from ..web import Context, Form, Panel, read_form, redirect

log = logging.getLogger("vpes.panel")
LOGIN_CSRF = "vpes_login_csrf"
WRONG = "The address or the password is not right."


class Auth:
    def __init__(self, panel: Panel) -> None:
        self.panel = panel

    def routes(self) -> list[Route]:
        p = self.panel
        return [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login_post, methods=["POST"]),
            Route(
                "/login/totp", p.page(self.totp_page, stage=sessions.STAGE_TOTP), methods=["GET"]
            ),
            Route(
                "/login/totp", p.page(self.totp_post, stage=sessions.STAGE_TOTP), methods=["POST"]
            ),
            Route("/logout", self.logout, methods=["POST"]),
        ]

    def _login_form(self, form: Form, status: int = 200, notice: str = "") -> Response:
        token = secrets.token_urlsafe(24)
        response = self.panel.render(
            "login.html", "Log in", status, form=form, csrf=token, notice=notice
        )
        response.set_cookie(
            LOGIN_CSRF,
            token,
            max_age=3600,
            path="/login",
            httponly=True,
            samesite="strict",
            secure=self.panel.settings.secure_cookies,
        )
        return response

    async def login_page(self, request: Request) -> Response:
        ended = request.query_params.get("ended")
        notice = "Your session ended. Log in again." if ended else ""
        return self._login_form(Form(), notice=notice)

    async def login_post(self, request: Request) -> Response:
        form = Form(await read_form(request))
        cookie = request.cookies.get(LOGIN_CSRF, "")
        if not (
            cookie
            and hmac.compare_digest(cookie, form.get("csrf"))
            and self.panel.same_origin(request)
        ):
            form.error("address", "This form was out of date. Try again.")
            return self._login_form(form, 403)
        address = form.get("address").lower()
        form.values["address"] = address
        if not address:
            form.error("address", "Enter your mail address, like alice@example.org.")
        if not form.get("password"):
            form.error("password", "Enter your password.")
        if not form.ok:
            return self._login_form(form, 422)
        client = request.client.host if request.client else ""
        wait = self.panel.login_wait(address, client)
        if wait:
            form.error("address", f"Too many attempts. Try again in {int(wait) + 1} seconds.")
            response = self._login_form(form, 429)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        session = await run_in_threadpool(self._authenticate, address, form.get("password"))
        if session is None:
            log.info("login refused for a mailbox of %s", address.partition("@")[2])
            form.error("password", WRONG)
            return self._login_form(form, 401)
        nxt = "/login/totp" if session.stage == sessions.STAGE_TOTP else "/"
        return self.panel.set_cookie(redirect(nxt), session)

    def _authenticate(self, address: str, password: str) -> sessions.Session | None:
        found = logins.verify(self.panel, address, password)
        if found is None:
            return None
        home, customer, hashed = found.home, found.customer, found.hashed
        panel_spec = (found.server.get("spec") or {}).get("panel") or {}
        admin = address in (panel_spec.get("admins") or [])
        enrolled = totp.Enrolment.load(customer.stored(totp_key(home.server, address)))
        stage = sessions.STAGE_TOTP if enrolled else sessions.STAGE_IN
        return self.panel.codec.start(
            home.namespace, home.server, address, admin, sessions.fingerprint(hashed), stage
        )

    async def totp_page(self, ctx: Context) -> Response:
        return ctx.render("totp_login.html", "Your second factor")

    async def totp_post(self, ctx: Context) -> Response:
        key = totp_key(ctx.session.server, ctx.session.user)
        step = await ctx.run(self._check_code, ctx.customer, key, ctx.form.get("code"))
        if step is None:
            ctx.form.error(
                "code",
                "This code is not right, or was used already. Enter the "
                "6 digits your app shows now.",
            )
            return ctx.render("totp_login.html", "Your second factor", 401)
        ctx.session = self.panel.codec.advance(ctx.session, sessions.STAGE_IN)
        return redirect("/")

    def _check_code(self, customer: Customer, key: str, code: str) -> int | None:
        wait = self.panel.by_address.allow(f"totp:{customer.namespace}/{key}")
        if wait:
            return None
        enrolled = totp.Enrolment.load(customer.stored(key))
        if enrolled is None:
            return None
        step = totp.verify(enrolled.secret, code, enrolled.last_step)
        if step is not None:
            customer.store({key: totp.Enrolment(enrolled.secret, step).dump()})
        return step

    async def logout(self, request: Request) -> Response:
        """Ends the session, only from the panel's own form (its CSRF token, its Origin):
        another site cannot log a customer out."""
        session = self.panel.codec.decode(request.cookies.get(sessions.COOKIE))
        if session is not None:
            token = (await read_form(request)).get("csrf", "")
            if not self.panel.same_origin(request) or not hmac.compare_digest(token, session.csrf):
                return self.panel.render(
                    "message.html",
                    "Refused",
                    403,
                    session=session,
                    text="This form is out of date. Open the page again.",
                )
        return self.panel.set_cookie(redirect("/login"), None)
