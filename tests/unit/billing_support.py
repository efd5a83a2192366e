"""What the billing unit tests share: the webhook secret, a Checkout Session id, settings."""

from __future__ import annotations

from typing import Any

from vpes_billing.settings import Settings

SECRET = "whsec_unit"
SESSION = "cs_test_" + "a1B2" * 15


def settings(**kw: Any) -> Settings:
    return Settings(stripe_api_key="sk_test_x", webhook_secret=SECRET, **kw)
