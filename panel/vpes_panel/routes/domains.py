"""Domains: the list, adding one (within the plan), removing one (typed confirmation),
and each domain's DNS records with the operator's live verdict.

Removing a domain removes, in the same change, everything that lives in it: its
mailboxes, their aliases, its aliases on other mailboxes, its forwards, its
catch-all and catch-alls that deliver to its mailboxes. The CRD's rules refuse
a mailbox, forward or catch-all whose domain is gone, so leaving them is not an
option; the confirmation page lists each by name before the person types the
domain. The domain of the person's own mailbox cannot be removed from here.
"""

from __future__ import annotations

import secrets

from starlette.responses import Response
from starlette.routing import Route
from vpes_operator.dns.schedule import CHECK_ANNOTATION

from .. import addresses_forms as af
from .. import dns_view, forms
from ..web import Context, Panel, redirect
from . import shared
from .shared import Server

FIELDS = {"domains": "domain"}
TAKEN = (
    "Another mail server on this platform already receives mail for this domain. If the "
    "domain is yours, ask the provider's support to move it to your server."
)
DONE = {
    "added": "The domain was added. Publish its DNS records (open it below) so that mail "
    "for it reaches your server.",
    "removed": "The domain was removed, with everything that was in it.",
    "check": "The operator checks this domain's records again within a minute. Reload "
    "this page to see the result.",
}


def _list(ctx: Context, server: Server, status: int = 200) -> Response:
    spec = server.spec
    rows = []
    for domain in spec.get("domains") or []:
        counts = dns_view.summary(dns_view.records(server.status, domain))
        rows.append({"domain": domain, "shown": forms.shown_domain(domain), "counts": counts})
    return ctx.render(
        "domains.html",
        "Domains",
        status,
        rows=rows,
        generation=server.generation,
        limit=forms.plan_limit(server.plan, "maxDomains"),
        plan=forms.plan_name(server.plan, spec),
        notice=shared.notice(ctx, DONE),
        managed=dns_view.managed(spec, server.status),
    )


def _own_domain(ctx: Context, domain: str) -> bool:
    return forms.domain_of(ctx.session.user) == domain


def _refusal(ctx: Context, server: Server, domain: str) -> str:
    """Why this domain may not be removed from here ("" when it may)."""
    if _own_domain(ctx, domain):
        return (
            "Your own mailbox is in this domain: removing it would remove your mailbox "
            "and log you out for good. Ask another administrator to remove it."
        )
    if len(server.spec.get("domains") or []) <= 1:
        return "This is the server's only domain: a server needs at least one."
    return ""


async def index(ctx: Context) -> Response:
    return _list(ctx, await shared.load(ctx))


async def add(ctx: Context) -> Response:
    server = await shared.load(ctx)
    typed = ctx.form.get("domain")
    domain = forms.take(ctx.form, "domain", forms.new_domain, typed, server.spec, server.plan)
    if domain is None:
        return _list(ctx, server, 422)
    home = await ctx.run(ctx.panel.directory.domain_home, domain)
    if home is not None and (home.namespace, home.server) != (
        ctx.session.namespace,
        ctx.session.server,
    ):
        ctx.form.error("domain", TAKEN)
        return _list(ctx, server, 422)

    def mutate(spec: forms.JSON) -> None:
        spec["domains"] = [*(spec.get("domains") or []), domain]

    status = await shared.save(ctx, mutate, FIELDS, "domain")
    if status is not None:
        return _list(ctx, await shared.load(ctx), status)
    return redirect("/domains?done=added")


async def show(ctx: Context) -> Response:
    server = await shared.load(ctx)
    domain = str(ctx.request.path_params["domain"])
    if domain not in (server.spec.get("domains") or []):
        return shared.not_found(ctx, "domain")
    status = server.status
    rows = dns_view.records(status, domain)
    return ctx.render(
        "domain.html",
        f"DNS of {forms.shown_domain(domain)}",
        domain=domain,
        shown=forms.shown_domain(domain),
        records=rows,
        managed=dns_view.managed(server.spec, status),
        published=dns_view.condition(status, dns_view.CONDITIONS["published"]),
        verified=dns_view.domain_checked(rows),
        routed=dns_view.condition(status, dns_view.CONDITIONS["routed"]),
        notice=shared.notice(ctx, DONE),
        own=_own_domain(ctx, domain),
    )


async def check(ctx: Context) -> Response:
    server = await shared.load(ctx)
    domain = str(ctx.request.path_params["domain"])
    if domain not in (server.spec.get("domains") or []):
        return shared.not_found(ctx, "domain")
    await ctx.run(ctx.customer.annotate, CHECK_ANNOTATION, secrets.token_hex(8))
    return redirect(f"/domains/{domain}?done=check")


async def remove_page(ctx: Context, server: Server | None = None, status: int = 200) -> Response:
    server = server or await shared.load(ctx)
    domain = str(ctx.request.path_params["domain"])
    if domain not in (server.spec.get("domains") or []):
        return shared.not_found(ctx, "domain")
    return ctx.render(
        "domain_remove.html",
        f"Remove {forms.shown_domain(domain)}",
        status,
        domain=domain,
        shown=forms.shown_domain(domain),
        loss=af.domain_loss(server.spec, domain),
        generation=server.generation,
        refusal=_refusal(ctx, server, domain),
    )


async def remove(ctx: Context) -> Response:
    server = await shared.load(ctx)
    domain = str(ctx.request.path_params["domain"])
    if domain not in (server.spec.get("domains") or []):
        return shared.not_found(ctx, "domain")
    if _refusal(ctx, server, domain):
        return await remove_page(ctx, server, 422)
    typed = ctx.form.get("confirm_domain").lower().rstrip(".")
    if typed not in (domain, forms.shown_domain(domain)):
        ctx.form.error(
            "confirm_domain",
            f"Type the domain's name, {forms.shown_domain(domain)}, to confirm. Nothing "
            "was removed.",
        )
        return await remove_page(ctx, server, 422)

    def mutate(spec: forms.JSON) -> None:
        # What is lost is computed again on the spec being changed: the generation
        # check makes it the same one the confirmation page listed.
        af.drop_domain(spec, af.domain_loss(spec, domain))

    status = await shared.save(ctx, mutate, FIELDS, "confirm_domain")
    if status is not None:
        return await remove_page(ctx, None, status)
    return redirect("/domains?done=removed")


def routes(panel: Panel) -> list[Route]:
    page = panel.page
    return [
        Route("/domains", page(index, admin=True), methods=["GET"]),
        Route("/domains", page(add, admin=True), methods=["POST"]),
        Route("/domains/{domain}", page(show, admin=True), methods=["GET"]),
        Route("/domains/{domain}/check", page(check, admin=True), methods=["POST"]),
        Route("/domains/{domain}/remove", page(remove_page, admin=True), methods=["GET"]),
        Route("/domains/{domain}/remove", page(remove, admin=True), methods=["POST"]),
    ]
