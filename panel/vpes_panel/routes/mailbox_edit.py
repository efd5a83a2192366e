"""One mailbox: editing it (name, quota, aliases, a new password, administrator or
not) and deleting it with a typed confirmation.

Two things are refused here rather than left to the API server: the last
administrator taking away their own flag (no one could manage the server
then), and deleting a mailbox a catch-all still delivers to (the CRD refuses
that too; the page says which catch-alls to change first). Nobody deletes
their own mailbox from here: they would be logged out for good.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from .. import addresses_forms as af
from .. import forms
from ..web import Context, Panel, redirect
from . import shared
from .mailboxes import (
    FIELDS,
    JSON,
    admins,
    forget_secrets,
    mailbox,
    new_password,
    panel_owned,
    point_at_panel,
    set_admin,
    store_hash,
)
from .shared import Server


def _edit_page(ctx: Context, server: Server, entry: JSON, status: int = 200) -> Response:
    address = entry["address"]
    if ctx.request.method == "GET" or status == 409:
        ctx.form.values = {
            "display_name": entry.get("displayName") or "",
            "quota": entry.get("quota") or "",
            "aliases": "\n".join(entry.get("aliases") or []),
            "admin": "yes" if address in admins(server.spec) else "",
        }
    return ctx.render(
        "mailbox.html",
        f"Mailbox {address}",
        status,
        address=address,
        generation=server.generation,
        default_quota=str(server.plan.get("defaultQuota") or "the plan's default"),
        own=address == ctx.session.user,
    )


def _edited(ctx: Context, server: Server, entry: JSON) -> tuple[JSON, str | None] | None:
    """The mailbox's new fields and the new password's hash (None: unchanged), or None
    with messages recorded."""
    form, address = ctx.form, entry["address"]
    name = forms.take(form, "display_name", forms.display_name, form.get("display_name"))
    quota = forms.take(form, "quota", forms.quota, form.get("quota"))
    aliases = forms.take(form, "aliases", af.aliases, form.get("aliases"), server.spec, address)
    admin = form.get("admin") == "yes"
    if address == ctx.session.user and not admin and admins(server.spec) == [address]:
        form.error(
            "admin",
            "You are this server's only administrator: without you no one could manage it. "
            "Make another mailbox an administrator first.",
        )
    hashed = new_password(ctx, address, required=False)
    if not form.ok:
        return None
    fields: JSON = {"displayName": name, "quota": quota, "aliases": aliases or None}
    fields["admin"] = admin
    return fields, hashed


def _apply(entry_address: str, fields: JSON, server_name: str, repoint: bool) -> shared.Mutate:
    def mutate(spec: JSON) -> None:
        entry = mailbox(spec, entry_address)
        if entry is None:
            return  # deleted meanwhile: the generation check refuses the change anyway
        for key in ("displayName", "quota", "aliases"):
            if fields[key] is None:
                entry.pop(key, None)
            else:
                entry[key] = fields[key]
        if repoint:
            point_at_panel(entry, server_name)
        if fields["admin"] != (entry_address in admins(spec)):
            set_admin(spec, entry_address, bool(fields["admin"]))

    return mutate


def _delete_refusal(ctx: Context, server: Server, address: str) -> str:
    if address == ctx.session.user:
        return (
            "This is your own mailbox: deleting it would log you out for good. Ask another "
            "administrator to delete it."
        )
    catching = af.catch_alls_to(server.spec, address)
    if catching:
        names = ", ".join(forms.shown_domain(d) for d in catching)
        return (
            f"The catch-all of {names} delivers to this mailbox. Change or remove it first "
            "under Aliases and forwards, then delete the mailbox."
        )
    return ""


async def edit_page(ctx: Context) -> Response:
    server = await shared.load(ctx)
    entry = mailbox(server.spec, str(ctx.request.path_params["address"]))
    if entry is None:
        return shared.not_found(ctx, "mailbox")
    return _edit_page(ctx, server, entry)


async def edit(ctx: Context) -> Response:
    server = await shared.load(ctx)
    address = str(ctx.request.path_params["address"])
    entry = mailbox(server.spec, address)
    if entry is None:
        return shared.not_found(ctx, "mailbox")
    result = await ctx.run(_edited, ctx, server, entry)
    if result is None:
        return _edit_page(ctx, server, entry, 422)
    fields, hashed = result
    owned = panel_owned(entry)
    if hashed and not owned:
        await store_hash(ctx, address, hashed)  # a key no login reads yet
    mutate = _apply(address, fields, ctx.session.server, bool(hashed))
    status = await shared.save(ctx, mutate, FIELDS, "display_name")
    if status is not None:
        now = await shared.load(ctx)
        return _edit_page(ctx, now, mailbox(now.spec, address) or entry, status)
    if hashed and owned:
        await store_hash(ctx, address, hashed)  # the spec change went through: now
    return redirect("/mailboxes?done=saved")


async def delete_page(ctx: Context, server: Server | None = None, status: int = 200) -> Response:
    server = server or await shared.load(ctx)
    address = str(ctx.request.path_params["address"])
    entry = mailbox(server.spec, address)
    if entry is None:
        return shared.not_found(ctx, "mailbox")
    return ctx.render(
        "mailbox_delete.html",
        f"Delete {address}",
        status,
        address=address,
        aliases=entry.get("aliases") or [],
        admin=address in admins(server.spec),
        generation=server.generation,
        refusal=_delete_refusal(ctx, server, address),
    )


async def delete(ctx: Context) -> Response:
    server = await shared.load(ctx)
    address = str(ctx.request.path_params["address"])
    if mailbox(server.spec, address) is None:
        return shared.not_found(ctx, "mailbox")
    if _delete_refusal(ctx, server, address):
        return await delete_page(ctx, server, 422)
    if ctx.form.get("confirm_address").lower() != address:
        ctx.form.error(
            "confirm_address",
            f"Type the mailbox's address, {address}, to confirm. Nothing was deleted.",
        )
        return await delete_page(ctx, server, 422)

    def mutate(spec: JSON) -> None:
        spec["mailboxes"] = [m for m in spec.get("mailboxes") or [] if m["address"] != address]
        if address in admins(spec):
            set_admin(spec, address, False)

    status = await shared.save(ctx, mutate, FIELDS, "confirm_address")
    if status is not None:
        return await delete_page(ctx, None, status)
    await ctx.run(forget_secrets, ctx, address)
    return redirect("/mailboxes?done=deleted")


def routes(panel: Panel) -> list[Route]:
    page = panel.page
    return [
        Route("/mailboxes/{address}", page(edit_page, admin=True), methods=["GET"]),
        Route("/mailboxes/{address}", page(edit, admin=True), methods=["POST"]),
        Route("/mailboxes/{address}/delete", page(delete_page, admin=True), methods=["GET"]),
        Route("/mailboxes/{address}/delete", page(delete, admin=True), methods=["POST"]),
    ]
