"""Aliases, forwards and catch-alls: adding each (checked against everything the
server already delivers), and removing each after a page that says where its
mail goes from then on.

The thing to remove is named in the query of the confirmation page and in the
form's hidden fields, and looked up in the spec: a name the server does not
have is "not found", never echoed.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from .. import addresses_forms as af
from .. import forms
from ..web import Context, Panel, redirect
from . import shared
from .mailboxes import JSON, mailbox
from .shared import Server

ALIAS_FIELDS = {"aliases": "alias", "mailboxes": "alias_mailbox"}
FORWARD_FIELDS = {"forwards": "forward_from", "from": "forward_from", "to": "forward_to"}
CATCH_FIELDS = {"catchAll": "catch_domain", "domain": "catch_domain", "to": "catch_to"}
DONE = {
    "alias": "The alias was added.",
    "forward": "The forward was added.",
    "catch": "The catch-all was set.",
    "removed": "It was removed.",
}


def _page(ctx: Context, server: Server, status: int = 200) -> Response:
    spec = server.spec
    return ctx.render(
        "addresses.html",
        "Aliases, forwards and catch-alls",
        status,
        mailboxes=spec.get("mailboxes") or [],
        forwards=spec.get("forwards") or [],
        catch_alls=spec.get("catchAll") or [],
        domains=[(d, forms.shown_domain(d)) for d in spec.get("domains") or []],
        generation=server.generation,
        notice=shared.notice(ctx, DONE),
    )


def _add_alias(ctx: Context, server: Server) -> shared.Mutate | None:
    form = ctx.form
    entry = mailbox(server.spec, form.get("alias_mailbox"))
    if entry is None:
        form.error("alias_mailbox", "Choose one of this server's mailboxes.")
        return None
    value = forms.take(form, "alias", af.alias, form.get("alias"), server.spec, entry)
    if value is None:
        return None

    def mutate(spec: JSON) -> None:
        target = mailbox(spec, entry["address"])
        if target is not None:
            target["aliases"] = [*(target.get("aliases") or []), value]

    return mutate


def _add_forward(ctx: Context, server: Server) -> shared.Mutate | None:
    form = ctx.form
    source = forms.take(
        form, "forward_from", af.forward_from, form.get("forward_from"), server.spec
    )
    targets = forms.take(form, "forward_to", af.forward_to, form.get("forward_to"), source)
    if source is None or targets is None:
        return None

    def mutate(spec: JSON) -> None:
        spec["forwards"] = [*(spec.get("forwards") or []), {"from": source, "to": targets}]

    return mutate


def _set_catch_all(ctx: Context, server: Server) -> shared.Mutate | None:
    form = ctx.form
    typed = form.get("catch_domain")
    domain = forms.take(form, "catch_domain", af.catch_all_domain, typed, server.spec)
    to = forms.take(form, "catch_to", af.catch_all_to, form.get("catch_to"), server.spec)
    if domain is None or to is None:
        return None

    def mutate(spec: JSON) -> None:
        spec["catchAll"] = [*(spec.get("catchAll") or []), {"domain": domain, "to": to}]

    return mutate


ADDERS = {
    "aliases": (_add_alias, ALIAS_FIELDS, "alias", "alias"),
    "forwards": (_add_forward, FORWARD_FIELDS, "forward_from", "forward"),
    "catch-all": (_set_catch_all, CATCH_FIELDS, "catch_domain", "catch"),
}


def _removal(
    server: Server, kind: str, params: dict[str, str]
) -> tuple[str, str, shared.Mutate] | None:
    """What removing the named thing loses, in words, and the change; None if no such thing."""
    spec = server.spec
    if kind == "aliases":
        entry, value = mailbox(spec, params.get("mailbox", "")), params.get("alias", "")
        if entry is None or value not in (entry.get("aliases") or []):
            return None
        address = entry["address"]
        lost = af.refused_or_caught(spec, af.alias_addresses(spec, value))

        def drop_alias(s: JSON) -> None:
            target = mailbox(s, address)
            if target is not None:
                target["aliases"] = [a for a in target.get("aliases") or [] if a != value]

        return f"the alias {value} of {address}", lost, drop_alias
    if kind == "forwards":
        source = params.get("from", "")
        found = next((f for f in spec.get("forwards") or [] if f["from"] == source), None)
        if found is None:
            return None
        lost = f"Mail to {source} is no longer sent on to {', '.join(found['to'])}: "
        lost += af.refused_or_caught(spec, [source])

        def drop_forward(s: JSON) -> None:
            s["forwards"] = [f for f in s.get("forwards") or [] if f["from"] != source]

        return f"the forward of {source}", lost, drop_forward
    domain = params.get("domain", "")
    found = next((c for c in spec.get("catchAll") or [] if c["domain"] == domain), None)
    if kind != "catch-all" or found is None:
        return None
    shown = forms.shown_domain(domain)
    lost = (
        f"Mail to addresses of {shown} that are no mailbox, alias or forward will be "
        f"refused instead of going to {found['to']}."
    )

    def drop_catch_all(s: JSON) -> None:
        s["catchAll"] = [c for c in s.get("catchAll") or [] if c["domain"] != domain]

    return f"the catch-all of {shown}", lost, drop_catch_all


async def index(ctx: Context) -> Response:
    return _page(ctx, await shared.load(ctx))


async def add(ctx: Context) -> Response:
    kind = str(ctx.request.path_params["kind"])
    if kind not in ADDERS:
        return shared.not_found(ctx, "such list")
    adder, fields, default, done = ADDERS[kind]
    server = await shared.load(ctx)
    mutate = adder(ctx, server)
    if mutate is None:
        return _page(ctx, server, 422)
    status = await shared.save(ctx, mutate, fields, default)
    if status is not None:
        return _page(ctx, await shared.load(ctx), status)
    return redirect(f"/addresses?done={done}")


async def remove_page(ctx: Context, server: Server | None = None, status: int = 200) -> Response:
    server = server or await shared.load(ctx)
    kind = str(ctx.request.path_params["kind"])
    params = ctx.form.values if ctx.request.method == "POST" else dict(ctx.request.query_params)
    found = _removal(server, kind, params)
    if found is None:
        return shared.not_found(ctx, "such address")
    what, lost, _ = found
    keys = {"aliases": ("mailbox", "alias"), "forwards": ("from",), "catch-all": ("domain",)}
    hidden = {k: params.get(k, "") for k in keys[kind]}
    return ctx.render(
        "address_remove.html",
        f"Remove {what}",
        status,
        what=what,
        lost=lost,
        kind=kind,
        hidden=hidden,
        generation=server.generation,
    )


async def remove(ctx: Context) -> Response:
    server = await shared.load(ctx)
    found = _removal(server, str(ctx.request.path_params["kind"]), ctx.form.values)
    if found is None:
        return shared.not_found(ctx, "such address")
    status = await shared.save(ctx, found[2], {}, "confirm")
    if status is not None:
        return await remove_page(ctx, await shared.load(ctx), status)
    return redirect("/addresses?done=removed")


def routes(panel: Panel) -> list[Route]:
    page = panel.page
    kinds = "{kind:str}"
    return [
        Route("/addresses", page(index, admin=True), methods=["GET"]),
        Route(f"/addresses/{kinds}", page(add, admin=True), methods=["POST"]),
        Route(f"/addresses/{kinds}/remove", page(remove_page, admin=True), methods=["GET"]),
        Route(f"/addresses/{kinds}/remove", page(remove, admin=True), methods=["POST"]),
    ]
