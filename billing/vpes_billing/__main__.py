"""`billing`: run the billing service (uvicorn).

Logging is configured here, not by uvicorn (`log_config=None`): uvicorn's access
log then goes through the root handler, whose filter redacts one-time link tokens
and Checkout Session ids from every line (vpes_billing.logsafe).
"""

from __future__ import annotations

import argparse
import logging

import uvicorn
from vpes_operator.clients.kube import Kube

from . import logsafe
from .service import BillingService
from .settings import Settings
from .stripe_gateway import StripeGateway
from .web import build_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="billing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logsafe.configure(logging.INFO)
    settings = Settings.from_env()
    service = BillingService(
        settings,
        Kube.connect(field_manager="vpes-billing"),
        StripeGateway(settings.stripe_api_key, settings.webhook_secret, settings.stripe_api_base),
    )
    uvicorn.run(
        build_app(service),
        host=args.host,
        port=args.port,
        proxy_headers=True,
        log_config=None,
        access_log=True,
    )


if __name__ == "__main__":
    main()
