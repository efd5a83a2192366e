"""The overview: is my server healthy and trusted? (Administrators; a mailbox user
goes to their own mailbox's page.)"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route
from vpes_operator import API_VERSION

from .. import health
from ..web import Context, Panel, redirect


def plan_of(panel: Panel, server: dict[str, Any]) -> dict[str, Any]:
    """The server's MailPlan spec (plans are public: read with the panel's own client)."""
    name = str((server.get("spec") or {}).get("plan", ""))
    found = panel.kube.get(API_VERSION, "MailPlan", None, name) if name else None
    return (found or {}).get("spec") or {}


def routes(panel: Panel) -> list[Route]:
    async def overview(ctx: Context) -> Response:
        if not ctx.session.admin:
            return redirect("/account")
        server = await ctx.run(ctx.customer.get)
        plan = await ctx.run(plan_of, panel, server)
        status = server.get("status") or {}
        spec = server.get("spec") or {}
        usage = status.get("usage") or {}
        return ctx.render(
            "overview.html",
            "Your mail server",
            server=server,
            phase=status.get("phase") or "Pending",
            summary=status.get("message") or "",
            checks=health.checks(status),
            sending=health.sending(status, plan.get("outboundPerHour")),
            suspended=bool(spec.get("suspended")),
            usage=usage,
            plan=plan,
            used=health.human_bytes(usage.get("storageUsedBytes")),
            capacity=health.human_bytes(usage.get("storageCapacityBytes")),
            last_backup=status.get("lastBackup") or {},
            mail_host=spec.get("mailHost") or "",
        )

    return [Route("/", panel.page(overview), methods=["GET"])]
