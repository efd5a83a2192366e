"""Mailboxes: the list with each one's quota and use, creating one (within the plan),
editing one (name, quota, aliases, a new password, whether it manages the server),
deleting one (typed confirmation), and the owner's "every mailbox needs a second
factor" setting.

A new password is checked for strength, hashed at once and kept in the panel's
Secret; the mailbox's passwordSecretRef points at it. The order of the two
writes keeps a refused or stale edit from changing a working password: a hash
under a key no mailbox uses yet is stored first, and a key a mailbox already
uses is overwritten only after the spec change went through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from .. import addresses_forms as af
from .. import forms, health, passwords
from ..customer import password_key, totp_key
from ..settings import PANEL_SECRET
from ..web import Context, Panel, redirect
from . import shared
from .shared import Server

JSON = dict[str, Any]
FIELDS = {
    "mailboxes": "local",
    "address": "local",
    "quota": "quota",
    "displayName": "display_name",
    "aliases": "aliases",
    "passwordSecretRef": "password",
    "panel": "admin",
    "admins": "admin",
    "requireTOTP": "require_totp",
}
DONE = {
    "created": "The mailbox was created. Its user can log in with the password you set.",
    "saved": "The mailbox's settings were saved.",
    "deleted": "The mailbox was deleted.",
    "totp": "The second-factor setting was saved.",
}


def mailbox(spec: JSON, address: str) -> JSON | None:
    return next((m for m in spec.get("mailboxes") or [] if m.get("address") == address), None)


def admins(spec: JSON) -> list[str]:
    return [str(a) for a in (spec.get("panel") or {}).get("admins") or []]


def set_admin(spec: JSON, address: str, on: bool) -> None:
    panel = spec.setdefault("panel", {})
    rest = [a for a in panel.get("admins") or [] if a != address]
    panel["admins"] = [*rest, address] if on else rest


@dataclass
class Row:
    address: str
    display_name: str
    admin: bool
    quota: str
    used: int | None
    quota_bytes: int | None
    used_words: str
    quota_words: str


def rows(server: Server) -> list[Row]:
    usage = {
        str(u.get("address")): u
        for u in (server.status.get("usage") or {}).get("mailboxUsage") or []
    }
    default = str(server.plan.get("defaultQuota") or "")
    out = []
    for m in server.spec.get("mailboxes") or []:
        u = usage.get(m["address"]) or {}
        quota = m.get("quota") or ""
        qbytes = u.get("quotaBytes") or (forms.quota_bytes(quota or default) or None)
        if not quota and default:
            quota = f"{default} (the plan's default)"
        out.append(
            Row(
                address=m["address"],
                display_name=m.get("displayName") or "",
                admin=m["address"] in admins(server.spec),
                quota=quota,
                used=u.get("usedBytes"),
                quota_bytes=qbytes,
                used_words=health.human_bytes(u.get("usedBytes")),
                quota_words=health.human_bytes(qbytes),
            )
        )
    return out


def _list(ctx: Context, server: Server, status: int = 200) -> Response:
    spec = server.spec
    return ctx.render(
        "mailboxes.html",
        "Mailboxes",
        status,
        rows=rows(server),
        domains=[(d, forms.shown_domain(d)) for d in spec.get("domains") or []],
        generation=server.generation,
        limit=forms.plan_limit(server.plan, "maxMailboxes"),
        plan=forms.plan_name(server.plan, spec),
        default_quota=str(server.plan.get("defaultQuota") or "the plan's default"),
        require_totp=bool((spec.get("panel") or {}).get("requireTOTP")),
        notice=shared.notice(ctx, DONE),
    )


def new_password(ctx: Context, address: str, required: bool) -> str | None:
    """The hash of the form's new password (None when none was typed and none is needed);
    a weak one is refused next to the field."""
    pw, confirm = ctx.form.get("password"), ctx.form.get("confirm")
    if not pw and not confirm and not required:
        return None
    if not pw:
        ctx.form.error("password", "Enter a password for the mailbox.")
        return None
    try:
        passwords.check(pw, confirm, context=passwords.context_words(address))
    except passwords.WeakPasswordError as e:
        ctx.form.error("password", str(e))
        return None
    return passwords.hashed(pw, ctx.panel.settings.bcrypt_rounds)


def point_at_panel(entry: JSON, server_name: str) -> None:
    entry["passwordSecretRef"] = {
        "name": PANEL_SECRET,
        "key": password_key(server_name, entry["address"]),
    }


def panel_owned(entry: JSON | None) -> bool:
    ref = (entry or {}).get("passwordSecretRef") or {}
    return bool(ref.get("name") == PANEL_SECRET)


async def store_hash(ctx: Context, address: str, hashed: str) -> None:
    key = password_key(ctx.session.server, address)
    await ctx.run(ctx.customer.store, {key: hashed})


def created(ctx: Context, server: Server) -> JSON | None:
    """The new mailbox's spec entry from the form, or None with messages recorded."""
    form, spec = ctx.form, server.spec
    local = forms.take(form, "local", forms.mailbox_local, form.get("local"))
    domain = forms.take(form, "domain", forms.server_domain, form.get("domain"), spec)
    address = f"{local}@{domain}" if local and domain else None
    if address is not None:
        used = af.taken(spec).get(address)
        if used:
            form.error("local", f"{address} is already {used}. An address can be used only once.")
        elif len(address) > forms.MAX_ADDRESS:
            form.error("local", f"An address has at most {forms.MAX_ADDRESS} characters.")
        count = len(spec.get("mailboxes") or [])
        limit = (count, server.plan, spec, "maxMailboxes", "mailboxes")
        forms.take(form, "local", forms.within_limit, *limit)
    name = forms.take(form, "display_name", forms.display_name, form.get("display_name"))
    quota = forms.take(form, "quota", forms.quota, form.get("quota"))
    if address is None or not form.ok:
        return None
    entry: JSON = {"address": address}
    if name:
        entry["displayName"] = name
    if quota:
        entry["quota"] = quota
    return entry


async def index(ctx: Context) -> Response:
    return _list(ctx, await shared.load(ctx))


async def create(ctx: Context) -> Response:
    server = await shared.load(ctx)
    entry = created(ctx, server)
    hashed = await ctx.run(new_password, ctx, entry["address"], True) if entry else None
    if entry is None or hashed is None:
        return _list(ctx, server, 422)
    point_at_panel(entry, ctx.session.server)
    admin = ctx.form.get("admin") == "yes"
    await store_hash(ctx, entry["address"], hashed)  # under a key no mailbox uses yet

    def mutate(spec: JSON) -> None:
        spec["mailboxes"] = [*(spec.get("mailboxes") or []), entry]
        if admin:
            set_admin(spec, entry["address"], True)

    status = await shared.save(ctx, mutate, FIELDS, "local")
    if status is not None:
        now = await shared.load(ctx)
        if mailbox(now.spec, entry["address"]) is None:  # no one else's password goes
            await ctx.run(forget_secrets, ctx, entry["address"])
        return _list(ctx, now, status)
    return redirect("/mailboxes?done=created")


async def require_totp(ctx: Context) -> Response:
    on = ctx.form.get("require_totp") == "yes"

    def mutate(spec: JSON) -> None:
        spec.setdefault("panel", {})["requireTOTP"] = on

    status = await shared.save(ctx, mutate, FIELDS, "require_totp")
    if status is not None:
        return _list(ctx, await shared.load(ctx), status)
    return redirect("/mailboxes?done=totp")


def routes(panel: Panel) -> list[Route]:
    page = panel.page
    return [
        Route("/mailboxes", page(index, admin=True), methods=["GET"]),
        Route("/mailboxes", page(create, admin=True), methods=["POST"]),
        Route("/mailboxes/second-factor", page(require_totp, admin=True), methods=["POST"]),
    ]


def forget_secrets(ctx: Context, address: str) -> None:
    """The deleted mailbox's password hash and TOTP secret leave the panel's Secret."""
    server = ctx.session.server
    ctx.customer.store({password_key(server, address): None, totp_key(server, address): None})
