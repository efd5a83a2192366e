"""My mailbox: every logged-in user's own page (administrators have one too): the
address, aliases and quota use, and the forms a mailbox user manages alone: the
password, forwarding of their own mail, their vacation reply, their OpenPGP public
key (published in the Web Key Directory), and their second factor (TOTP); where the
plan has calendar and contacts, the address their apps use.

A new password is stored as a Dovecot hash in the panel's Secret and the
mailbox's passwordSecretRef points at it (one spec change, carrying the form's
generation); the session goes on with the new hash's fingerprint, while every
other session of the old password ends. A TOTP secret being enrolled waits in
the panel's Secret (`pending_key`), never in the page's form, until a code made
from it proves the user's app has it; only then is it the user's second factor.
Wrong current passwords and codes are limited per user, so that a left-open
session cannot be used to guess either.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from starlette.responses import Response
from starlette.routing import Route
from vpes_billing.ratelimit import RateLimit
from vpes_operator import crypto

from .. import account_view, openpgp, openpgp_view, passwords, sessions, totp
from ..customer import ConflictError, Customer, InvalidError, password_key, totp_key, user_key
from ..settings import PANEL_SECRET
from ..web import Context, Panel, redirect
from . import setup, shared
from .overview import plan_of

# What a successful POST says on the next GET (?done=<key>): fixed texts only.
DONE = {
    "password": "Your password is changed. Use the new one in your mail apps too.",
    "forwarding": "Your forwarding is saved; it applies within a minute.",
    "vacation": "Your vacation reply is saved; it applies within a minute.",
    "openpgp": "Your OpenPGP key is published: mail apps that look up your address find it.",
    "openpgp-off": "Your OpenPGP key is withdrawn: mail apps no longer find it here.",
    "totp": "Your second factor is on: from now on, logging in also asks for a code.",
    "totp-off": "Your second factor is off: logging in asks for your password only.",
    "totp-required": "This server's administrators require a second factor for every "
    "mailbox. Set yours up below to continue.",
}
# The API server's refusals of a vacation, next to the field they are about.
VACATION_FIELDS = {
    "mailboxes": "vacation_on",
    "vacation": "vacation_on",
    "enabled": "vacation_on",
    "subject": "vacation_subject",
    "message": "vacation_message",
    "days": "vacation_days",
    "until": "vacation_until",
}
# The API server's refusals of a key, next to the key's field.
OPENPGP_FIELDS = {"mailboxes": "openpgp_key", "openpgpKey": "openpgp_key"}
WRONG_CODE = "This code is not right, or was used already. Enter the 6 digits your app shows now."
TOO_MANY = "Too many attempts. Wait a minute and try again."


def pending_key(server: str, address: str) -> str:
    """Where a TOTP secret waits while its user enrols it."""
    return f"totp-pending.{server}.{user_key(address)}"


def _generation(value: str) -> int:
    return int(value) if value.isdigit() else -1


class Account:
    def __init__(self, panel: Panel) -> None:
        self.panel = panel
        # Wrong current passwords and second-factor codes, per user.
        self.attempts = RateLimit(5, 60.0)

    def routes(self) -> list[Route]:
        p = self.panel
        return [
            Route("/account", p.page(self.show), methods=["GET"]),
            Route("/account/password", p.page(self.password), methods=["POST"]),
            Route("/account/forwarding", p.page(self.forwarding), methods=["POST"]),
            Route("/account/vacation", p.page(self.vacation), methods=["POST"]),
            Route("/account/openpgp", p.page(self.openpgp_key), methods=["POST"]),
            Route("/account/totp/enrol", p.page(self.enrol), methods=["POST"]),
            Route("/account/totp/disable", p.page(self.disable), methods=["POST"]),
        ]

    # -- the page -------------------------------------------------------------------

    async def show(self, ctx: Context) -> Response:
        return await self._page(ctx)

    async def _page(self, ctx: Context, status: int = 200) -> Response:
        user = ctx.session.user
        server = await ctx.run(ctx.customer.get)
        spec, state = server.get("spec") or {}, server.get("status") or {}
        view = account_view.mailbox(spec, state, user)
        if view is None:
            return ctx.render(
                "message.html", "My mailbox", 404, text="This mailbox no longer exists."
            )
        enrolled, secret = await ctx.run(self._second_factor, ctx.customer, user)
        stored = openpgp_view.stored_key(spec, user)
        key = None
        if stored:
            key = await ctx.run(openpgp_view.published, stored, user, datetime.now(UTC))
        done = DONE.get(ctx.request.query_params.get("done", ""), "")
        plan = await ctx.run(plan_of, self.panel, server)
        return ctx.render(
            "account.html",
            "My mailbox",
            status,
            view=view,
            generation=server["metadata"].get("generation", 0),
            forwarding_supported=account_view.forwarding_supported(),
            enrolled=enrolled,
            require_totp=bool((spec.get("panel") or {}).get("requireTOTP")),
            secret=secret,
            secret_text=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
            qr=totp.qr_svg(totp.uri(secret, user)) if secret else "",
            done=done,
            openpgp_key=key,
            mail_servers=setup.servers(self.panel.settings.mail, setup.mail_host(spec, plan)),
            profile_url=setup.PATH,
            calendar_url=setup.calendar_address(self.panel.settings.mail, plan),
        )

    @staticmethod
    def _second_factor(customer: Customer, user: str) -> tuple[bool, str]:
        """(enrolled, the secret to enrol: kept in the panel's Secret from the first
        showing, so a reload shows the same code to scan)."""
        if totp.Enrolment.load(customer.stored(totp_key(customer.server, user))):
            return True, ""
        key = pending_key(customer.server, user)
        secret = customer.stored(key)
        if not secret:
            secret = totp.new_secret()
            customer.store({key: secret})
        return False, secret

    # -- password -------------------------------------------------------------------

    async def password(self, ctx: Context) -> Response:
        f, user = ctx.form, ctx.session.user
        if not f.get("current"):
            f.error("current", "Enter your current password.")
        elif self.attempts.allow(f"pw:{ctx.session.namespace}/{user}"):
            f.error("current", TOO_MANY)
        else:
            spec = (await ctx.run(ctx.customer.get)).get("spec") or {}
            current = await ctx.run(ctx.customer.current_hash, spec, user)
            if not current or not await ctx.run(crypto.verify_password, f.get("current"), current):
                f.error("current", "This is not your current password.")
        try:
            passwords.check(
                f.get("password"), f.get("confirm"), context=passwords.context_words(user)
            )
        except passwords.WeakPasswordError as e:
            f.error("password", str(e))
        if not f.ok:
            return await self._page(ctx, 422)
        hashed = await ctx.run(
            passwords.hashed, f.get("password"), self.panel.settings.bcrypt_rounds
        )
        try:
            await ctx.run(
                set_password, ctx.customer, user, _generation(f.get("generation")), hashed
            )
        except ConflictError as e:
            f.error("current", str(e))
            return await self._page(ctx, 409)
        except InvalidError as e:
            f.error("current", str(e))
            return await self._page(ctx, 422)
        ctx.session = dataclasses.replace(ctx.session, fingerprint=sessions.fingerprint(hashed))
        return redirect("/account?done=password")

    # -- forwarding -----------------------------------------------------------------

    async def forwarding(self, ctx: Context) -> Response:
        f, user = ctx.form, ctx.session.user
        if not account_view.forwarding_supported():
            return redirect("/account")
        keep = f.get("keep_copy") == "yes"
        try:
            targets = account_view.parse_targets(f.get("targets"), user, keep)
        except account_view.FieldError as e:
            f.error("targets", str(e))
            return await self._page(ctx, 422)

        def mutate(spec: account_view.JSON) -> None:
            account_view.set_forwarding(spec, user, targets, keep)
            objection = account_view.check_spec(spec)
            if objection:
                raise InvalidError(objection, [("spec.forwards", objection)])

        try:
            await ctx.run(ctx.customer.change, _generation(f.get("generation")), mutate)
        except (ConflictError, InvalidError) as e:
            causes = e.causes if isinstance(e, InvalidError) else []
            f.error("targets", causes[0][1] if causes else str(e))
            return await self._page(ctx, 409 if isinstance(e, ConflictError) else 422)
        return redirect("/account?done=forwarding")

    # -- vacation reply ---------------------------------------------------------------

    async def vacation(self, ctx: Context) -> Response:
        f, user = ctx.form, ctx.session.user
        value, errors = account_view.parse_vacation(
            f.get("vacation_on") == "yes",
            f.get("vacation_subject"),
            f.get("vacation_message"),
            f.get("vacation_days"),
            f.get("vacation_until"),
            datetime.now(UTC).date(),
        )
        for name, message in errors.items():
            f.error(name, message)
        if not f.ok:
            return await self._page(ctx, 422)

        def mutate(spec: account_view.JSON) -> None:
            account_view.set_vacation(spec, user, value)

        status = await shared.save(ctx, mutate, VACATION_FIELDS, "vacation_on")
        if status is not None:
            return await self._page(ctx, status)
        return redirect("/account?done=vacation")

    # -- OpenPGP key ------------------------------------------------------------------

    async def openpgp_key(self, ctx: Context) -> Response:
        """Publish the key pasted (checked by gpg first), or withdraw the published one."""
        f, user = ctx.form, ctx.session.user
        armored: str | None = None
        if f.get("openpgp_action") != "withdraw":
            if not f.get("openpgp_key"):
                f.error("openpgp_key", "Paste your public key: what gpg --armor --export prints.")
                return await self._page(ctx, 422)
            try:
                armored = (await ctx.run(openpgp.check_key, f.get("openpgp_key"), user)).armored
            except openpgp.KeyRefusedError as e:
                f.error("openpgp_key", str(e))
                if isinstance(e, openpgp.SecretKeyError):
                    f.values["openpgp_key"] = ""  # a secret is never shown back
                return await self._page(ctx, 422)

        def mutate(spec: account_view.JSON) -> None:
            objection = openpgp_view.no_room(spec, user) if armored else None
            if objection:
                raise InvalidError(objection, [("spec.mailboxes", objection)])
            openpgp_view.set_key(spec, user, armored)

        status = await shared.save(ctx, mutate, OPENPGP_FIELDS, "openpgp_key")
        if status is not None:
            return await self._page(ctx, status)
        return redirect("/account?done=" + ("openpgp" if armored else "openpgp-off"))

    # -- second factor ----------------------------------------------------------------

    async def enrol(self, ctx: Context) -> Response:
        user = ctx.session.user
        if self.attempts.allow(f"totp:{ctx.session.namespace}/{user}"):
            ctx.form.error("code", TOO_MANY)
            return await self._page(ctx, 429)
        if not await ctx.run(_enrol, ctx.customer, user, ctx.form.get("code")):
            ctx.form.error("code", WRONG_CODE)
            return await self._page(ctx, 422)
        return redirect("/account?done=totp")

    async def disable(self, ctx: Context) -> Response:
        f, user = ctx.form, ctx.session.user
        spec = (await ctx.run(ctx.customer.get)).get("spec") or {}
        if (spec.get("panel") or {}).get("requireTOTP"):
            f.error(
                "off_code",
                "This server's administrators require a second factor for every mailbox, "
                "so yours stays on.",
            )
            return await self._page(ctx, 403)
        if self.attempts.allow(f"totp:{ctx.session.namespace}/{user}"):
            f.error("off_code", TOO_MANY)
            return await self._page(ctx, 429)
        if not await ctx.run(_disable, ctx.customer, user, f.get("off_code")):
            f.error("off_code", WRONG_CODE)
            return await self._page(ctx, 422)
        return redirect("/account?done=totp-off")


def set_password(customer: Customer, user: str, generation: int, hashed: str) -> None:
    """Store `hashed` as `user`'s password: in the panel's Secret, and, unless the
    mailbox already points there, point its passwordSecretRef at it (one spec change;
    the stored hash is taken back if the change is refused, so nothing changed)."""
    key = password_key(customer.server, user)
    ref = {"name": PANEL_SECRET, "key": key}
    spec = customer.get().get("spec") or {}
    mine: account_view.JSON = next(
        (m for m in spec.get("mailboxes") or [] if m.get("address") == user), {}
    )
    customer.store({key: hashed})
    if mine.get("passwordSecretRef") == ref:
        return

    def point(spec: account_view.JSON) -> None:
        for mailbox in spec.get("mailboxes") or []:
            if mailbox.get("address") == user:
                mailbox["passwordSecretRef"] = ref

    try:
        customer.change(generation, point)
    except Exception:
        customer.store({key: None})
        raise


def _enrol(customer: Customer, user: str, code: str) -> bool:
    """Make the pending secret `user`'s second factor if `code` was made from it."""
    pending = pending_key(customer.server, user)
    secret = customer.stored(pending)
    step = totp.verify(secret, code, 0) if secret else None
    if secret is None or step is None:
        return False
    customer.store(
        {totp_key(customer.server, user): totp.Enrolment(secret, step).dump(), pending: None}
    )
    return True


def _disable(customer: Customer, user: str, code: str) -> bool:
    key = totp_key(customer.server, user)
    enrolled = totp.Enrolment.load(customer.stored(key))
    if enrolled is None:
        return True
    if totp.verify(enrolled.secret, code, enrolled.last_step) is None:
        return False
    customer.store({key: None})
    return True
