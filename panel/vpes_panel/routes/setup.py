"""Set up your mail app: the logged-in user's Apple configuration profile (iPhone,
iPad, Mac), from the same client settings as the domain's SRV records and the
autoconfig endpoints (`vpes_operator.dns.records.client_services`: the edge's hosts,
or the server's own mail host when its plan has a dedicated address). It holds no
password: the device asks for it while installing the profile."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route
from vpes_operator.dns.records import ClientService, client_services, served_mail_host
from vpes_operator.settings import OperatorSettings

from .. import account_view
from ..web import NO_STORE, Context, Panel
from ..wellknown import mobileconfig
from ..wellknown.dav_address import dav_home
from .overview import plan_of

PATH = "/account/setup.mobileconfig"
LABELS = {
    "imap": "Incoming mail (IMAP)",
    "pop3": "Incoming mail (POP3)",
    "smtp": "Outgoing mail (SMTP)",
}


def mail_host(spec: dict[str, Any], plan: dict[str, Any]) -> str | None:
    """The server's own mail host when mail apps are sent to it: spec.mailHost on a plan
    (its MailPlan's spec, as stored) with a dedicated address; None: the edge's hosts."""
    host = spec.get("mailHost")
    dedicated = (plan.get("features") or {}).get("dedicatedAddress") is True
    return served_mail_host(host if isinstance(host, str) else None, dedicated)


def servers(settings: OperatorSettings, host: str | None = None) -> list[tuple[str, ClientService]]:
    """What the account page lists for mail apps that ask: (what it is, the service),
    at the server's served mail host `host` or the edge's."""
    return [(LABELS[s.protocol], s) for s in client_services(settings, host)]


def calendar_address(settings: OperatorSettings, plan: dict[str, Any]) -> str | None:
    """The calendar and contacts (CalDAV/CardDAV) address, when the server's plan (its
    MailPlan's spec, as stored) has them; None otherwise."""
    if ((plan.get("features") or {}).get("calendar")) is not True:
        return None
    return dav_home(settings.edge_web_host)


async def profile(ctx: Context) -> Response:
    user = ctx.session.user
    server = await ctx.run(ctx.customer.get)
    view = account_view.mailbox(server.get("spec") or {}, server.get("status") or {}, user)
    if view is None:
        return ctx.render("message.html", "My mailbox", 404, text="This mailbox no longer exists.")
    plan = await ctx.run(plan_of, ctx.panel, server)
    host = mail_host(server.get("spec") or {}, plan)
    body = mobileconfig.profile(ctx.panel.settings.mail, user, view.display_name, host)
    disposition = f'attachment; filename="{mobileconfig.filename(user)}"'
    return Response(
        body,
        media_type=mobileconfig.MEDIA_TYPE,
        headers={**NO_STORE, "Content-Disposition": disposition},
    )


def routes(panel: Panel) -> list[Route]:
    return [Route(PATH, panel.page(profile), methods=["GET"])]
