"""Plan and billing (administrators): the plan's every limit against the server's
use, a suspension explained with what to do, the plans on sale, and Stripe's
customer portal for changing the plan, invoices and the payment method.

The Stripe customer comes from billing's annotations on the server, read at the
POST (never from the form), so a customer can only ever open their own portal.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route
from vpes_billing import naming as billing
from vpes_operator import API_VERSION

from .. import billing_portal, plan_view
from ..web import Context, Panel, redirect
from .overview import plan_of

PURPOSES = ("billing", "plan")


def stripe_ids(server: dict[str, Any]) -> tuple[str | None, str | None]:
    """(customer, subscription) from billing's annotations; None where absent or not an id."""
    notes = server["metadata"].get("annotations") or {}
    customer = str(notes.get(billing.ANNOTATION_CUSTOMER, ""))
    subscription = str(notes.get(billing.ANNOTATION_SUBSCRIPTION, ""))
    return (
        customer if billing.valid_stripe_id(customer, "cus_") else None,
        subscription if billing.valid_stripe_id(subscription, "sub_") else None,
    )


def routes(panel: Panel) -> list[Route]:
    portal = billing_portal.from_settings(panel.settings)

    def on_sale() -> list[dict[str, Any]]:
        return panel.kube.list(API_VERSION, "MailPlan")

    async def page(ctx: Context, status: int = 200) -> Response:
        server = await ctx.run(ctx.customer.get)
        spec, state = server.get("spec") or {}, server.get("status") or {}
        raw = await ctx.run(plan_of, panel, server)
        plan = plan_view.parse_plan(raw) if raw else None
        customer, _ = stripe_ids(server)
        return ctx.render(
            "plan.html",
            "Plan and billing",
            status,
            plan_name=(plan.display_name if plan else None) or str(spec.get("plan", "")),
            limits=plan_view.limits(plan, spec, state) if plan else [],
            suspension=plan_view.suspension(spec, server["metadata"].get("annotations") or {}),
            choices=plan_view.choices(await ctx.run(on_sale), str(spec.get("plan", ""))),
            billing_set_up=portal is not None,
            billed=customer is not None,
        )

    async def show(ctx: Context) -> Response:
        return await page(ctx)

    async def open_portal(ctx: Context) -> Response:
        purpose = ctx.form.get("purpose")
        if portal is None or purpose not in PURPOSES:
            return redirect("/plan")
        customer, subscription = stripe_ids(await ctx.run(ctx.customer.get))
        if customer is None:
            return redirect("/plan")
        back = f"{panel.settings.public_url}/plan"
        try:
            url = await ctx.run(
                portal.session_url, customer, back, subscription if purpose == "plan" else None
            )
        except billing_portal.PortalUnavailableError:
            ctx.form.error(
                "portal", "Stripe could not open your billing page just now. Try again in a minute."
            )
            return await page(ctx, 503)
        return redirect(url)

    return [
        Route("/plan", panel.page(show, admin=True), methods=["GET"]),
        Route("/plan/portal", panel.page(open_portal, admin=True), methods=["POST"]),
    ]
