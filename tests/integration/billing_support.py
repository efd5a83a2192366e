"""What the billing integration tests share: the service in process, a customer, signing."""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from starlette.testclient import TestClient
from vpes_billing import naming as n
from vpes_billing.service import BillingService
from vpes_billing.settings import Settings
from vpes_billing.stripe_gateway import StripeGateway
from vpes_billing.web import build_app
from vpes_devcluster.billing_dev import checkout_session, event, sign
from vpes_devcluster.billing_rbac import install_billing
from vpes_devcluster.stripe_mock import StripeMock
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from .operator_support import (
    SECRET_VALUES,
    OperatorProcess,
    harvest_secrets,
    install_platform,
    plan_body,
)

# Starlette's test client warns that it will move to httpx2; the app is unaffected.

WEBHOOK_SECRET = "whsec_test_" + "x" * 24
GRACE = 2.0
TOKENS: set[str] = set()  # one-time link tokens handed out during the run
RETENTION = 3.0


@dataclass
class Billing:
    client: TestClient
    service: BillingService
    stripe: StripeMock
    admin: Kube
    price_a: str
    price_b: str
    plan_a: str
    plan_b: str
    kubeconfig: Path  # billing's ServiceAccount

    @property
    def sa(self) -> Kube:
        """The API as billing's ServiceAccount sees it."""
        return self.service.kube

    def metric(self, name: str, **labels: str) -> float:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "")
        m = re.search("^" + pattern + r" (\S+)$", self.client.get("/metrics").text, re.M)
        return float(m.group(1)) if m else 0.0

    def deliver(self, evt: dict[str, Any], signature: str | None = "sign") -> Any:
        body = json.dumps(evt).encode()
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            headers["Stripe-Signature"] = sign(body, WEBHOOK_SECRET)
        elif signature is not None:
            headers["Stripe-Signature"] = signature
        return self.client.post("/stripe/webhook", content=body, headers=headers)

    def server(self, sub: str) -> dict[str, Any] | None:
        return self.admin.get(
            API_VERSION, "PersonalMailServer", n.namespace_for(sub), n.SERVER_NAME
        )


@dataclass
class Customer:
    customer: str
    subscription: str
    session: str  # the Checkout Session id: Stripe's, shown to others, proves nothing
    key: str  # the signup key the return URL carries: the only proof of being the customer
    domain: str
    email: str

    @classmethod
    def new(cls, domain: str | None = None) -> Customer:
        tag = secrets.token_hex(6)
        return cls(
            customer=f"cus_{tag}",
            subscription=f"sub_{tag}",
            session=f"cs_test_{tag}{'a' * 50}",
            key=n.new_signup_key(),
            domain=domain or f"c{tag}.example",
            email=f"owner-{tag}@example.net",
        )

    def checkout(self, plan: str, event_id: str | None = None) -> dict[str, Any]:
        """The signed event of a Checkout Session made by the signup form: its metadata
        carries the hash of the signup key, as `signup.start` puts it there."""
        session = checkout_session(
            session=self.session,
            customer=self.customer,
            subscription=self.subscription,
            email=self.email,
            domain=self.domain,
            mailbox="alice",
            plan=plan,
        )
        session["metadata"][n.METADATA_SIGNUP_KEY] = n.signup_key_digest(self.key)
        return event("checkout.session.completed", session, event_id)

    def subscription_event(self, etype: str) -> dict[str, Any]:
        return event(etype, {"id": self.subscription, "object": "subscription"})

    def invoice_event(self, etype: str) -> dict[str, Any]:
        return event(
            etype,
            {
                "id": f"in_{secrets.token_hex(6)}",
                "object": "invoice",
                "parent": {"subscription_details": {"subscription": self.subscription}},
            },
        )


@pytest.fixture(scope="module")
def operator(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    op = OperatorProcess(install_platform(cluster), tmp_path_factory.mktemp("billing-operator"))
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def billing(
    cluster: Any, operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Billing]:
    admin = Kube(cluster.api_client(), field_manager="tests")
    kubeconfig = install_billing(cluster)
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    stripe = StripeMock(Path(tmp_path_factory.mktemp("stripe-mock")))
    stripe.start()
    tag = uuid.uuid4().hex[:6]
    price_a, price_b = f"price_A{tag}", f"price_B{tag}"
    plan_a, plan_b = f"basic-{tag}", f"plus-{tag}"
    admin.apply(plan_body(plan_a, stripePriceId=price_a, displayName="Basic"))
    admin.apply(plan_body(plan_b, stripePriceId=price_b, maxMailboxes=20, storage="2Gi"))
    settings = Settings(
        stripe_api_key="sk_test_123",
        webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe.url,
        public_url="https://billing.test",
        provider_domain="mail.provider.test",
        grace_seconds=GRACE,
        retention_seconds=RETENTION,
        sweep_seconds=0,
    )
    service = BillingService(
        settings,
        Kube(api, field_manager="vpes-billing"),
        StripeGateway(settings.stripe_api_key, settings.webhook_secret, settings.stripe_api_base),
    )
    log_path = Path(tmp_path_factory.mktemp("billing-log")) / "billing.log"
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("vpes")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with TestClient(build_app(service), follow_redirects=False) as client:
            yield Billing(
                client, service, stripe, admin, price_a, price_b, plan_a, plan_b, kubeconfig
            )
    finally:
        logger.removeHandler(handler)
        handler.close()
        stripe.stop()
        for plan in (plan_a, plan_b):
            admin.delete(API_VERSION, "MailPlan", None, plan)
        selector = f"{n.LABEL_MANAGED_BY}={n.MANAGED_BY}"
        for ns in admin.list("v1", "Namespace", labels=selector):
            harvest_secrets(admin, ns["metadata"]["name"])
            admin.delete("v1", "Namespace", None, ns["metadata"]["name"])
    # Nothing secret in billing's own log either: keys, passwords, link tokens.
    text = log_path.read_text()
    assert "INFO" in text, "the billing log check would prove nothing"
    for value in {*SECRET_VALUES, WEBHOOK_SECRET, settings.stripe_api_key, *TOKENS}:
        assert value not in text, f"a secret ({value[:4]}...) is in billing's log"


def signed_up(b: Billing, c: Customer, price: str | None = None, plan: str | None = None) -> None:
    b.stripe.set_subscription(customer=c.customer, status="active", price=price or b.price_a)
    r = b.deliver(c.checkout(plan or b.plan_a))
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "done", r.json()


def secret_value(kube: Kube, namespace: str, name: str, key: str) -> str:
    obj = kube.get("v1", "Secret", namespace, name)
    assert obj is not None
    return base64.b64decode(obj["data"][key]).decode()
