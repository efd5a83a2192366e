"""The one place the panel talks to Stripe: a customer portal session (invoices,
payment method, plan changes), through the same client and the same way of
pointing at stripe-mock as billing's StripeGateway. The portal itself is
Stripe's page; the panel only sends the customer there and gets them back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import stripe

if TYPE_CHECKING:
    from stripe.params.billing_portal import SessionCreateParams

from .settings import Settings


class PortalUnavailableError(Exception):
    """Stripe could not make a portal session now; the page says to try again."""


class Portal:
    def __init__(self, api_key: str, api_base: str | None = None) -> None:
        kwargs: dict[str, Any] = {"max_network_retries": 2}
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
        self._client = stripe.StripeClient(api_key, **kwargs)

    def session_url(self, customer: str, return_url: str, subscription: str | None = None) -> str:
        """The address of a new portal session of `customer`; with `subscription`, one
        that opens on changing that subscription's plan."""
        params: SessionCreateParams = {"customer": customer, "return_url": return_url}
        if subscription:
            params["flow_data"] = {
                "type": "subscription_update",
                "subscription_update": {"subscription": subscription},
                "after_completion": {
                    "type": "redirect",
                    "redirect": {"return_url": return_url},
                },
            }
        try:
            session = self._client.v1.billing_portal.sessions.create(params=params)
        except stripe.StripeError as e:
            raise PortalUnavailableError(str(e)) from e
        url = session["url"]
        if not isinstance(url, str) or not url.startswith("https://"):
            raise PortalUnavailableError("Stripe answered without a portal address")
        return url


def from_settings(settings: Settings) -> Portal | None:
    """The portal, or None where billing is not set up (no Stripe key)."""
    if not settings.stripe_api_key:
        return None
    return Portal(settings.stripe_api_key, settings.stripe_api_base)
