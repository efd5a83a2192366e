"""Set up your mail app: the logged-in user's Apple configuration profile (iPhone,
iPad, Mac), from the same client settings as the domain's SRV records and the
autoconfig endpoints (`vpes_operator.dns.records.client_services`). It holds no
password: the device asks for it while installing the profile."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route
from vpes_operator.dns.records import ClientService, client_services
from vpes_operator.settings import OperatorSettings

from .. import account_view
from ..web import NO_STORE, Context, Panel
from ..wellknown import mobileconfig
from ..wellknown.dav_address import dav_home

PATH = "/account/setup.mobileconfig"
LABELS = {
    "imap": "Incoming mail (IMAP)",
    "pop3": "Incoming mail (POP3)",
    "smtp": "Outgoing mail (SMTP)",
}


def servers(settings: OperatorSettings) -> list[tuple[str, ClientService]]:
    """What the account page lists for mail apps that ask: (what it is, the service)."""
    return [(LABELS[s.protocol], s) for s in client_services(settings)]


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
    body = mobileconfig.profile(ctx.panel.settings.mail, user, view.display_name)
    disposition = f'attachment; filename="{mobileconfig.filename(user)}"'
    return Response(
        body,
        media_type=mobileconfig.MEDIA_TYPE,
        headers={**NO_STORE, "Content-Disposition": disposition},
    )


def routes(panel: Panel) -> list[Route]:
    return [Route(PATH, panel.page(profile), methods=["GET"])]
