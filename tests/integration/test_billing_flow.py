"""Billing against the real control plane, the real operator and stripe-mock.

The billing service runs in process (its ASGI app through Starlette's test
client) as the chart's billing ServiceAccount; the operator runs as a
subprocess as the chart's operator ServiceAccount, so Ready is real.
Webhook payloads are signed with a test secret exactly as Stripe signs them.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from starlette.testclient import TestClient
from vpes_billing import naming as n
from vpes_billing.devtools import StripeMock, checkout_session, event, install_billing, sign
from vpes_billing.service import BillingService
from vpes_billing.settings import Settings
from vpes_billing.stripe_gateway import StripeGateway
from vpes_billing.web import build_app
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from .operator_support import (
    SECRET_VALUES,
    OperatorProcess,
    harvest_secrets,
    install_platform,
    plan_body,
    wait_for,
    wait_ready,
)

# Starlette's test client warns that it will move to httpx2; the app is unaffected.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:starlette.testclient")

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
    session: str
    domain: str
    email: str

    @classmethod
    def new(cls, domain: str | None = None) -> Customer:
        tag = secrets.token_hex(6)
        return cls(
            customer=f"cus_{tag}",
            subscription=f"sub_{tag}",
            session=f"cs_test_{tag}{'a' * 50}",
            domain=domain or f"c{tag}.example",
            email=f"owner-{tag}@example.net",
        )

    def checkout(self, plan: str, event_id: str | None = None) -> dict[str, Any]:
        return event(
            "checkout.session.completed",
            checkout_session(
                session=self.session,
                customer=self.customer,
                subscription=self.subscription,
                email=self.email,
                domain=self.domain,
                mailbox="alice",
                plan=plan,
            ),
            event_id,
        )

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
            yield Billing(client, service, stripe, admin, price_a, price_b, plan_a, plan_b)
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


def test_signup_checkout_to_ready_and_password_link(billing: Billing) -> None:
    b, c = billing, Customer.new()
    r = b.client.get(f"/signup?plan={b.plan_a}")
    assert r.status_code == 200 and "mail.provider.test" in r.text
    r = b.client.post(
        "/signup", data={"plan": b.plan_a, "email": c.email, "domain": c.domain, "mailbox": "alice"}
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("https://checkout.stripe.com/")

    r = b.client.get(f"/signup/status?session_id={c.session}")
    assert r.json()["state"] == "waiting"

    signed_up(b, c)
    ns = n.namespace_for(c.subscription)
    namespace = b.admin.get("v1", "Namespace", None, ns)
    assert namespace is not None
    labels = namespace["metadata"]["labels"]
    assert labels[n.LABEL_CUSTOMER] == c.customer
    assert labels[n.LABEL_SUBSCRIPTION] == c.subscription
    assert labels[n.LABEL_TENANT] == "true"
    quota = b.admin.request("GET", f"/api/v1/namespaces/{ns}/resourcequotas/{n.QUOTA_NAME}")
    assert quota["spec"]["hard"]["requests.storage"] == "1Gi"

    # Either side finds the other: the server by Stripe ids, the ids from the server.
    found = b.admin.list(
        API_VERSION, "PersonalMailServer", labels=f"{n.LABEL_CUSTOMER}={c.customer}"
    )
    assert [s["metadata"]["namespace"] for s in found] == [ns]
    ann = found[0]["metadata"]["annotations"]
    assert ann[n.ANNOTATION_SUBSCRIPTION] == c.subscription
    assert ann[n.ANNOTATION_CHECKOUT] == c.session
    spec = found[0]["spec"]
    assert spec["domains"] == [c.domain] and spec["owner"]["email"] == c.email
    assert spec["mailboxes"][0]["address"] == f"alice@{c.domain}"

    wait_ready(b.admin, ns, n.SERVER_NAME, timeout=120)
    pods = b.admin.list("v1", "Pod", ns, labels=f"vpes.io/server={n.SERVER_NAME}")
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
    state = b.client.get(f"/signup/status?session_id={c.session}").json()
    assert state["state"] == "server" and state["ready"] is True
    page = b.client.get(f"/signup/return?session_id={c.session}")
    assert "Your server is ready" in page.text

    # The one-time password link: issued once, used once, only its hash stored.
    r = b.client.post("/signup/password-link", data={"session_id": c.session})
    assert r.status_code == 303
    token = r.headers["location"].removeprefix("/password/")
    TOKENS.add(token)
    link = b.admin.get("v1", "Secret", ns, n.PASSWORD_LINK_SECRET)
    assert link is not None and token.split(".")[1] not in json.dumps(link)
    again = b.client.post("/signup/password-link", data={"session_id": c.session})
    assert again.status_code == 409
    assert b.client.get(f"/password/{token}").status_code == 200
    short = b.client.post(f"/password/{token}", data={"password": "short", "confirm": "short"})
    assert short.status_code == 422 and "12 to 512" in short.text
    pw = "correct horse battery staple"
    SECRET_VALUES.add(pw)
    r = b.client.post(f"/password/{token}", data={"password": pw, "confirm": pw})
    assert r.status_code == 200, r.text
    assert secret_value(b.admin, ns, n.FIRST_PASSWORD_SECRET, "password") == pw
    r = b.client.post(f"/password/{token}", data={"password": pw + "2", "confirm": pw + "2"})
    assert r.status_code == 410
    assert secret_value(b.admin, ns, n.FIRST_PASSWORD_SECRET, "password") == pw
    assert b.client.get(f"/password/{token[:-1]}x").status_code == 410


def test_same_event_twice_makes_one_server(billing: Billing) -> None:
    b, c = billing, Customer.new()
    b.stripe.set_subscription(customer=c.customer, price=b.price_a)
    evt = c.checkout(b.plan_a)
    first = b.deliver(evt)
    second = b.deliver(evt)
    assert first.json()["outcome"] == "done"
    assert second.json()["outcome"] == "duplicate"
    # A new delivery of the same checkout under another event id changes nothing either.
    third = b.deliver(c.checkout(b.plan_a))
    assert third.json()["outcome"] == "done"
    servers = b.admin.list(
        API_VERSION, "PersonalMailServer", labels=f"{n.LABEL_SUBSCRIPTION}={c.subscription}"
    )
    assert len(servers) == 1
    # The record survives a restart: a fresh service sees the event as processed.
    fresh = BillingService(b.service.settings, b.service.kube, b.service.stripe)
    assert fresh.handle(evt).outcome == "duplicate"


def test_plan_change_follows_the_subscription(billing: Billing) -> None:
    b, c = billing, Customer.new()
    signed_up(b, c)
    ns = n.namespace_for(c.subscription)
    b.stripe.set_subscription(customer=c.customer, price=b.price_b)
    r = b.deliver(c.subscription_event("customer.subscription.updated"))
    assert r.json()["outcome"] == "done"
    server = b.server(c.subscription)
    assert server is not None and server["spec"]["plan"] == b.plan_b
    quota = b.admin.request("GET", f"/api/v1/namespaces/{ns}/resourcequotas/{n.QUOTA_NAME}")
    assert quota["spec"]["hard"]["requests.storage"] == "2Gi"
    # A late, replayed-looking event decides from Stripe's current state: still plan b.
    b.deliver(c.subscription_event("customer.subscription.created"))
    assert b.server(c.subscription)["spec"]["plan"] == b.plan_b  # type: ignore[index]


def test_payment_failure_suspends_after_grace_and_payment_resumes(billing: Billing) -> None:
    b, c = billing, Customer.new()
    signed_up(b, c)
    b.stripe.set_subscription(customer=c.customer, status="past_due", price=b.price_a)
    r = b.deliver(c.invoice_event("invoice.payment_failed"))
    assert r.json()["outcome"] == "done"
    server = b.server(c.subscription)
    assert server is not None and server["spec"].get("suspended") is False, "grace period"
    assert n.ANNOTATION_PAYMENT_FAILED_AT in server["metadata"]["annotations"]
    time.sleep(GRACE + 0.5)
    assert b.service.sweep() >= 1
    server = b.server(c.subscription)
    assert server is not None and server["spec"]["suspended"] is True
    assert server["metadata"]["annotations"][n.ANNOTATION_SUSPENDED_BY] == "payment"
    ns = n.namespace_for(c.subscription)
    wait_for(
        lambda: (
            (b.admin.get("apps/v1", "StatefulSet", ns, n.SERVER_NAME) or {})
            .get("spec", {})
            .get("replicas")
            == 0
            or None
        ),
        "the operator to scale the suspended server to zero",
    )

    b.stripe.set_subscription(customer=c.customer, status="active", price=b.price_a)
    r = b.deliver(c.invoice_event("invoice.paid"))
    assert r.json()["outcome"] == "done"
    server = b.server(c.subscription)
    assert server is not None and server["spec"]["suspended"] is False
    assert n.ANNOTATION_PAYMENT_FAILED_AT not in server["metadata"]["annotations"]
    # The failure event delivered late (out of order) does not suspend a paid server.
    r = b.deliver(c.invoice_event("invoice.payment_failed"))
    server = b.server(c.subscription)
    assert server is not None and server["spec"]["suspended"] is False
    wait_ready(b.admin, ns, n.SERVER_NAME, timeout=120)


def test_cancellation_suspends_backs_up_and_removes_after_retention(billing: Billing) -> None:
    b, c = billing, Customer.new()
    signed_up(b, c)
    ns = n.namespace_for(c.subscription)
    b.stripe.set_subscription(customer=c.customer, status="canceled", price=b.price_a)
    r = b.deliver(c.subscription_event("customer.subscription.deleted"))
    assert r.json()["outcome"] == "done", r.json()
    server = b.server(c.subscription)
    assert server is not None and server["spec"]["suspended"] is True
    backup = b.admin.get(API_VERSION, "MailBackup", ns, f"{n.SERVER_NAME}-{n.FINAL_BACKUP_NAME}")
    assert backup is not None and backup["spec"] == {
        "server": n.SERVER_NAME,
        "trigger": "Final",
        "method": "Restic",
    }
    assert b.deliver(c.subscription_event("customer.subscription.deleted")).status_code == 200
    time.sleep(RETENTION + 0.5)
    b.service.sweep()

    def gone() -> bool:
        obj = b.admin.get("v1", "Namespace", None, ns)
        return obj is None or obj["metadata"].get("deletionTimestamp") is not None

    wait_for(gone, f"namespace {ns} deleted after retention")
    # The domain is free again.
    claim = b.admin.get("v1", "ConfigMap", "vpes-system", n.domain_claim_name(c.domain))
    assert claim is None


@pytest.mark.parametrize("signature", [None, "", "t=1,v1=deadbeef", "bad"])
def test_bad_or_missing_signature_is_400_and_changes_nothing(
    billing: Billing, signature: str | None
) -> None:
    b, c = billing, Customer.new()
    b.stripe.set_subscription(customer=c.customer, price=b.price_a)
    evt = c.checkout(b.plan_a)
    r = b.deliver(evt, signature=signature)
    assert r.status_code == 400
    assert b.admin.get("v1", "Namespace", None, n.namespace_for(c.subscription)) is None
    assert not b.service.ledger.seen(evt["id"])


def test_signed_with_another_secret_or_tampered_is_400(billing: Billing) -> None:
    b, c = billing, Customer.new()
    evt = c.checkout(b.plan_a)
    body = json.dumps(evt).encode()
    other = sign(body, "whsec_other")
    r = b.client.post("/stripe/webhook", content=body, headers={"Stripe-Signature": other})
    assert r.status_code == 400
    good = sign(body, WEBHOOK_SECRET)
    tampered = body.replace(b"alice", b"mallory")
    r = b.client.post("/stripe/webhook", content=tampered, headers={"Stripe-Signature": good})
    assert r.status_code == 400
    assert b.admin.get("v1", "Namespace", None, n.namespace_for(c.subscription)) is None


def test_oversized_body_is_refused(billing: Billing) -> None:
    body = b"{" + b" " * (billing.service.settings.max_body_bytes + 10) + b"}"
    r = billing.client.post(
        "/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)}
    )
    assert r.status_code == 413


def test_unknown_price_makes_no_server_and_is_logged_and_counted(
    billing: Billing, caplog: pytest.LogCaptureFixture
) -> None:
    b, c = billing, Customer.new()
    b.stripe.set_subscription(customer=c.customer, price="price_nosuchplan")
    with caplog.at_level(logging.ERROR, logger="vpes.billing"):
        r = b.deliver(c.checkout(b.plan_a))
    assert r.status_code == 200 and r.json()["outcome"] == "failed"
    assert b.admin.get("v1", "Namespace", None, n.namespace_for(c.subscription)) is None
    assert any("price_nosuchplan" in rec.getMessage() for rec in caplog.records)
    metrics = b.client.get("/metrics").text
    assert 'vpes_billing_errors_total{reason="unknown-price"}' in metrics
    assert "sk_test_123" not in caplog.text and WEBHOOK_SECRET not in caplog.text


def test_domain_taken_is_refused_with_a_message(billing: Billing) -> None:
    b, first = billing, Customer.new()
    signed_up(b, first)
    r = b.client.post(
        "/signup",
        data={"plan": b.plan_a, "email": "x@example.net", "domain": first.domain, "mailbox": "me"},
    )
    assert r.status_code == 409
    assert f"The domain {first.domain} is already served by another customer" in r.text
    # Paid anyway (two checkouts raced): no server, and the return page says why.
    second = Customer.new(domain=first.domain)
    b.stripe.set_subscription(customer=second.customer, price=b.price_a)
    r = b.deliver(second.checkout(b.plan_a))
    assert r.json()["outcome"] == "refused"
    assert b.admin.get("v1", "Namespace", None, n.namespace_for(second.subscription)) is None
    page = b.client.get(f"/signup/return?session_id={second.session}")
    assert "already served by another customer" in page.text
