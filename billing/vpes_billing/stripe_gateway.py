"""The one place that talks to Stripe (the real API, or stripe-mock in tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

ACTIVE = frozenset({"active", "trialing"})
DELINQUENT = frozenset({"past_due", "unpaid"})
ENDED = frozenset({"canceled", "incomplete_expired"})


class StripeUnavailableError(Exception):
    """Stripe could not be asked (network, 5xx): the event is retried later."""


class SubscriptionMissingError(Exception):
    """Stripe knows no such subscription: nothing to provision or change."""


@dataclass(frozen=True)
class SubscriptionState:
    """What Stripe says about a subscription now: the only input of lifecycle decisions."""

    id: str
    customer: str
    status: str
    price_id: str | None


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


def _get(obj: Any, key: str) -> Any:
    try:
        return obj[key]
    except (KeyError, TypeError):
        return None


class StripeGateway:
    def __init__(self, api_key: str, webhook_secret: str, api_base: str | None = None) -> None:
        kwargs: dict[str, Any] = {"max_network_retries": 2}
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
        self._client = stripe.StripeClient(api_key, **kwargs)
        self._webhook_secret = webhook_secret

    def verify(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event, if `signature` is Stripe's for `payload`; raises ValueError otherwise."""
        if not signature:
            raise ValueError("missing Stripe-Signature header")
        try:
            event = self._client.construct_event(payload, signature, self._webhook_secret)
        except stripe.SignatureVerificationError as e:
            raise ValueError("bad signature") from e
        except ValueError as e:  # not JSON
            raise ValueError("payload is not a JSON event") from e
        data: dict[str, Any] = event.to_dict()
        return data

    def subscription(self, subscription_id: str) -> SubscriptionState:
        try:
            sub = self._client.v1.subscriptions.retrieve(subscription_id)
        except stripe.InvalidRequestError as e:
            if e.http_status == 404:
                raise SubscriptionMissingError(subscription_id) from e
            raise StripeUnavailableError(f"retrieving subscription {subscription_id}: {e}") from e
        except stripe.StripeError as e:
            raise StripeUnavailableError(f"retrieving subscription {subscription_id}: {e}") from e
        items = _get(_get(sub, "items"), "data") or []
        price = _get(_get(items[0], "price"), "id") if items else None
        customer = _get(sub, "customer")
        if not isinstance(customer, str):
            customer = _get(customer, "id")
        return SubscriptionState(
            id=str(sub["id"]),
            customer=str(customer),
            status=str(_get(sub, "status")),
            price_id=str(price) if price else None,
        )

    def create_checkout(
        self,
        *,
        price_id: str,
        email: str,
        metadata: dict[str, str],
        success_url: str,
        cancel_url: str,
    ) -> CheckoutSession:
        try:
            session = self._client.v1.checkout.sessions.create(
                params={
                    "mode": "subscription",
                    "line_items": [{"price": price_id, "quantity": 1}],
                    "customer_email": email,
                    "metadata": metadata,
                    "subscription_data": {"metadata": metadata},
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                }
            )
        except stripe.StripeError as e:
            raise StripeUnavailableError(f"creating a Checkout Session: {e}") from e
        return CheckoutSession(id=str(session["id"]), url=str(_get(session, "url") or ""))
