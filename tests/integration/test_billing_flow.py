"""Billing against the real control plane, the real operator and stripe-mock.

The billing service runs in process (its ASGI app through Starlette's test
client) as the chart's billing ServiceAccount, under the chart's admission
policy; the operator runs as a subprocess as the chart's operator
ServiceAccount, so Ready is real. One test runs the real server
(`python -m vpes_billing`, uvicorn) through `devtools.start_billing`.
Webhook payloads are signed with a test secret exactly as Stripe signs them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
from prometheus_client import generate_latest
from starlette.testclient import TestClient
from vpes_billing import naming as n
from vpes_billing.devtools import (
    StripeMock,
    checkout_session,
    event,
    install_billing,
    sign,
    start_billing,
    stop_billing,
)
from vpes_billing.service import BillingService
from vpes_billing.settings import Settings
from vpes_billing.stripe_gateway import StripeGateway
from vpes_billing.web import build_app
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError, Kube

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


def final_backup_phase(b: Billing, ns: str, phase: str) -> None:
    """What the backup controller will do: set the MailBackup's phase (status subresource)."""
    b.admin.request(
        "PATCH",
        f"/apis/{API_VERSION}/namespaces/{ns}/mailbackups/{n.SERVER_NAME}-{n.FINAL_BACKUP_NAME}"
        "/status",
        body={"status": {"phase": phase}},
        content_type="application/merge-patch+json",
    )


def namespace_gone(b: Billing, ns: str) -> bool:
    obj = b.admin.get("v1", "Namespace", None, ns)
    return obj is None or obj["metadata"].get("deletionTimestamp") is not None


def cancelled(b: Billing, c: Customer) -> str:
    """Signed up, then cancelled: suspended, the final backup requested."""
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
    return ns


def test_cancellation_suspends_backs_up_and_removes_after_the_final_backup(
    billing: Billing,
) -> None:
    b, c = billing, Customer.new()
    ns = cancelled(b, c)
    assert b.deliver(c.subscription_event("customer.subscription.deleted")).status_code == 200
    time.sleep(RETENTION + 0.5)
    # Retention is over, but the final backup has not completed: the namespace stays.
    # (Where the operator has a backup controller, it may move the phase on to Failed
    # meanwhile, with no S3 here: that keeps the namespace too.)
    for phase in (None, "Pending", "Running"):
        if phase:
            final_backup_phase(b, ns, phase)
        b.service.sweep()
        assert not namespace_gone(b, ns), f"namespace removed with the final backup {phase}"
    server = b.server(c.subscription)
    assert server is not None
    seen = server["metadata"]["annotations"][n.ANNOTATION_FINAL_BACKUP_PHASE]
    assert seen in {"Pending", "Running", "Failed"}
    removed = b.metric("vpes_billing_removals_total", final_backup="Completed")

    def completed_then_removed() -> bool:
        final_backup_phase(b, ns, "Completed")
        b.service.sweep()
        return namespace_gone(b, ns)

    wait_for(completed_then_removed, f"namespace {ns} deleted after the final backup")
    assert b.metric("vpes_billing_removals_total", final_backup="Completed") == removed + 1
    # The domain is free again.
    claim = b.admin.get("v1", "ConfigMap", "vpes-system", n.domain_claim_name(c.domain))
    assert claim is None


def test_failed_final_backup_keeps_the_namespace_until_the_limit(
    billing: Billing, caplog: pytest.LogCaptureFixture
) -> None:
    b, c = billing, Customer.new()
    ns = cancelled(b, c)
    final_backup_phase(b, ns, "Failed")
    time.sleep(RETENTION + 0.5)
    failed = b.metric("vpes_billing_errors_total", reason="final-backup-failed")
    with caplog.at_level(logging.ERROR, logger="vpes.billing"):
        for _ in range(2):
            r = b.deliver(c.subscription_event("customer.subscription.deleted"))
            assert r.status_code == 200, r.text
    assert not namespace_gone(b, ns), "removed although the final backup failed"
    assert b.metric("vpes_billing_errors_total", reason="final-backup-failed") == failed + 1
    assert any(
        "final backup" in rec.getMessage()
        and "failed" in rec.getMessage()
        and ns in rec.getMessage()
        for rec in caplog.records
    )
    # A service that waits at most 1s past the retention period gives up, and says so.
    wait = 1.0
    impatient = BillingService(
        dataclasses.replace(b.service.settings, final_backup_wait_seconds=wait),
        b.service.kube,
        b.service.stripe,
    )
    time.sleep(wait)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="vpes.billing"):
        outcome = impatient.handle(c.subscription_event("customer.subscription.deleted"))
    assert outcome.outcome == "done", outcome
    wait_for(lambda: namespace_gone(b, ns), f"namespace {ns} deleted after giving up")
    assert any(
        "gave up waiting for the final backup (Failed)" in rec.getMessage()
        for rec in caplog.records
    )
    text = generate_latest(impatient.registry).decode()
    assert 'vpes_billing_errors_total{reason="final-backup-gave-up"} 1.0' in text
    assert 'vpes_billing_removals_total{final_backup="Failed"} 1.0' in text


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


def test_oversized_body_is_refused_and_counted(billing: Billing) -> None:
    b = billing
    body = b"{" + b" " * (b.service.settings.max_body_bytes + 10) + b"}"
    before = b.metric("vpes_billing_webhook_rejected_total", reason="size")
    r = b.client.post(
        "/stripe/webhook", content=body, headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)}
    )
    assert r.status_code == 413
    assert b.metric("vpes_billing_webhook_rejected_total", reason="size") == before + 1

    # Streamed, with no Content-Length: refused as soon as it is too long, counted too.
    def chunks() -> Iterator[bytes]:
        for _ in range(b.service.settings.max_body_bytes // 1024 + 2):
            yield b" " * 1024

    r = b.client.post("/stripe/webhook", content=chunks(), headers={"Stripe-Signature": "x"})
    assert r.status_code == 413, r.text
    assert b.metric("vpes_billing_webhook_rejected_total", reason="size") == before + 2


def test_unknown_price_makes_no_server_until_the_plan_exists(
    billing: Billing, caplog: pytest.LogCaptureFixture
) -> None:
    b, c = billing, Customer.new()
    price = f"price_later{secrets.token_hex(4)}"
    b.stripe.set_subscription(customer=c.customer, price=price)
    evt = c.checkout(b.plan_a)
    with caplog.at_level(logging.ERROR, logger="vpes.billing"):
        r = b.deliver(evt)
    # Not 2xx: Stripe delivers it again.
    assert r.status_code == 500 and r.json()["outcome"] == "failed", r.text
    assert b.admin.get("v1", "Namespace", None, n.namespace_for(c.subscription)) is None
    assert any(price in rec.getMessage() for rec in caplog.records)
    metrics = b.client.get("/metrics").text
    assert 'vpes_billing_errors_total{reason="unknown-price"}' in metrics
    assert "sk_test_123" not in caplog.text and WEBHOOK_SECRET not in caplog.text
    # Still failing, still retried: not a duplicate.
    assert b.deliver(evt).status_code == 500

    # The provider adds the plan; Stripe's next delivery of the same event provisions.
    plan = f"later-{secrets.token_hex(3)}"
    b.admin.apply(plan_body(plan, stripePriceId=price))
    try:
        r = b.deliver(evt)
        assert r.status_code == 200 and r.json()["outcome"] == "done", r.text
        server = b.server(c.subscription)
        assert server is not None and server["spec"]["plan"] == plan
        again = b.deliver(evt)
        assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    finally:
        b.admin.delete(API_VERSION, "MailPlan", None, plan)


def test_plan_change_to_an_unknown_price_is_retried(billing: Billing) -> None:
    b, c = billing, Customer.new()
    signed_up(b, c)
    price = f"price_later{secrets.token_hex(4)}"
    b.stripe.set_subscription(customer=c.customer, price=price)
    evt = c.subscription_event("customer.subscription.updated")
    r = b.deliver(evt)
    assert r.status_code == 500 and r.json()["outcome"] == "failed", r.text
    assert b.server(c.subscription)["spec"]["plan"] == b.plan_a  # type: ignore[index]
    plan = f"later-{secrets.token_hex(3)}"
    b.admin.apply(plan_body(plan, stripePriceId=price))
    try:
        r = b.deliver(evt)
        assert r.status_code == 200 and r.json()["outcome"] == "done", r.text
        assert b.server(c.subscription)["spec"]["plan"] == plan  # type: ignore[index]
    finally:
        b.admin.delete(API_VERSION, "MailPlan", None, plan)


def test_incomplete_subscription_gets_a_suspended_server_until_paid(billing: Billing) -> None:
    b, c = billing, Customer.new()
    b.stripe.set_subscription(customer=c.customer, status="incomplete", price=b.price_a)
    r = b.deliver(c.checkout(b.plan_a))
    assert r.json()["outcome"] == "done", r.json()
    server = b.server(c.subscription)
    assert server is not None and server["spec"]["suspended"] is True
    # Created suspended, not suspended afterwards: the operator never ran it.
    created = [f for f in server["metadata"]["managedFields"] if f["operation"] == "Update"]
    assert any("f:suspended" in json.dumps(f["fieldsV1"]) for f in created)
    assert server["metadata"]["annotations"][n.ANNOTATION_SUSPENDED_BY] == "incomplete"
    b.stripe.set_subscription(customer=c.customer, status="active", price=b.price_a)
    r = b.deliver(c.invoice_event("invoice.paid"))
    assert r.json()["outcome"] == "done"
    server = b.server(c.subscription)
    assert server is not None and server["spec"]["suspended"] is False


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


# -- what billing's ServiceAccount may not do (chart: billing-rbac.yaml) ---------------

POLICY = "vpes-billing-scope"


def refused(call: Any, message: str) -> ApiError:
    """`call` is refused by the chart's admission policy (not just by RBAC), saying why."""
    with pytest.raises(ApiError) as info:
        call()
    e = info.value
    assert e.status in (403, 422), e
    assert POLICY in e.message and message in e.message, e.message
    return e


def create_binding(kube: Kube, body: dict[str, Any]) -> Any:
    ns = body["metadata"]["namespace"]
    return kube.request(
        "POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", body=body
    )


def tenant_binding(namespace: str, *, role: str = "vpes-billing-tenant") -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": f"escalate-{secrets.token_hex(3)}", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [
            {"kind": "ServiceAccount", "name": "vpes-billing", "namespace": "vpes-system"}
        ],
    }


@pytest.mark.parametrize("target", ["kube-system", "vpes-system", "default", "test"])
def test_billing_cannot_bind_its_role_outside_its_namespaces(
    billing: Billing, namespace: str, target: str
) -> None:
    ns = namespace if target == "test" else target
    refused(
        lambda: create_binding(billing.sa, tenant_binding(ns)),
        "may write RoleBindings only inside the namespaces it manages",
    )
    path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"
    bindings = billing.admin.request("GET", path)["items"]
    assert not [rb for rb in bindings if rb["metadata"]["name"].startswith("escalate-")]


def test_billing_cannot_bind_its_role_to_others_in_its_namespaces(billing: Billing) -> None:
    b, c = billing, Customer.new()
    signed_up(b, c)
    body = tenant_binding(n.namespace_for(c.subscription))
    body["subjects"] = [{"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}]
    refused(lambda: create_binding(b.sa, body), "only to its own ServiceAccount")


def test_billing_cannot_touch_a_namespace_it_does_not_manage(
    billing: Billing, namespace: str
) -> None:
    b = billing
    managed = {n.LABEL_MANAGED_BY: n.MANAGED_BY}
    refused(
        lambda: b.sa.patch_metadata("v1", "Namespace", None, namespace, {"labels": managed}),
        "may create or change only namespaces named",
    )
    refused(
        lambda: b.sa.delete("v1", "Namespace", None, namespace),
        "may change or delete only the namespaces it manages",
    )
    # Billing's own namespace (dry run: admission runs, nothing is deleted if it let it).
    refused(
        lambda: b.sa.request("DELETE", "/api/v1/namespaces/vpes-system", query={"dryRun": "All"}),
        "may change or delete only the namespaces it manages",
    )
    obj = b.admin.get("v1", "Namespace", None, namespace)
    assert obj is not None and obj["metadata"].get("deletionTimestamp") is None
    assert n.LABEL_MANAGED_BY not in (obj["metadata"].get("labels") or {})


def test_billing_cannot_take_over_a_namespace_with_its_prefix(billing: Billing) -> None:
    """Billing's prefix alone is not enough: the namespace must also be labelled as
    billing's, and billing may not add that label to one it did not create."""
    b = billing
    name = f"{n.NAMESPACE_PREFIX}{secrets.token_hex(8)}"
    b.admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        refused(
            lambda: b.sa.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": {n.LABEL_MANAGED_BY: n.MANAGED_BY}},
                }
            ),
            "may change or delete only the namespaces it manages",
        )
        refused(
            lambda: b.sa.delete("v1", "Namespace", None, name),
            "may change or delete only the namespaces it manages",
        )
        refused(
            lambda: create_binding(b.sa, tenant_binding(name)),
            "only inside the namespaces it manages",
        )
    finally:
        b.admin.delete("v1", "Namespace", None, name)


@pytest.mark.parametrize(
    "metadata",
    [
        {"name": f"other-{uuid.uuid4().hex[:8]}", "labels": {n.LABEL_MANAGED_BY: n.MANAGED_BY}},
        {"name": f"{n.NAMESPACE_PREFIX}{uuid.uuid4().hex[:16]}"},
    ],
)
def test_billing_creates_only_labelled_namespaces_with_its_prefix(
    billing: Billing, metadata: dict[str, Any]
) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
    refused(lambda: billing.sa.create(body), "may create or change only namespaces named")
    assert billing.admin.get("v1", "Namespace", None, metadata["name"]) is None


def test_billing_cannot_unlabel_its_own_namespace(billing: Billing) -> None:
    b, c = billing, Customer.new()
    signed_up(b, c)
    ns = n.namespace_for(c.subscription)
    refused(
        lambda: b.sa.patch_metadata(
            "v1", "Namespace", None, ns, {"labels": {n.LABEL_MANAGED_BY: "someone-else"}}
        ),
        "may create or change only namespaces named",
    )


# -- the real server --------------------------------------------------------------


def test_real_server_provisions_and_logs_no_token_or_session_id(
    billing: Billing, tmp_path: Path
) -> None:
    """`devtools.start_billing` (what `make demo` needs): stripe-mock and
    `python -m vpes_billing` (uvicorn with its access log) against billing's
    kubeconfig. A signed checkout makes a server; the pages that carry the one-time
    token and the session id are visited; neither appears in the server's output."""
    b, c = billing, Customer.new()
    workdir = tmp_path / "billing"
    dev = start_billing(
        b.kubeconfig,
        workdir,
        price=b.price_a,
        customer=c.customer,
        settings_env={"VPES_BILLING_SWEEP_SECONDS": "0"},
        detach=True,  # as the demo runs it: stopped later from its pid files
    )
    try:
        assert dev.webhook_secret.startswith("whsec_test_")
        status, body = dev.deliver(c.checkout(b.plan_a))
        assert status == 200 and body["outcome"] == "done", body
        assert b.server(c.subscription) is not None
        with httpx.Client(base_url=dev.url, follow_redirects=False, timeout=60) as client:
            r = client.post("/signup/password-link", data={"session_id": c.session})
            assert r.status_code == 303, r.text
            token = r.headers["location"].removeprefix("/password/")
            TOKENS.add(token)
            assert client.get(f"/password/{token}").status_code == 200
            assert client.get(f"/signup/return?session_id={c.session}").status_code == 200
            assert client.get(f"/signup/status?session_id={c.session}").status_code == 200
    finally:
        stop_billing(workdir)
        assert dev.stripe.proc is not None
        assert dev.proc.wait(timeout=15) is not None
        assert dev.stripe.proc.wait(timeout=15) is not None
        dev.stop()  # nothing left to stop: a no-op
    assert not (workdir / "billing.pid").exists()
    text = dev.log.read_text()
    assert '"POST /stripe/webhook HTTP/1.1" 200' in text, "no access log: proves nothing"
    assert "/password/[redacted]" in text and "session_id=[redacted]" in text
    assert token.split(".")[1] not in text
    assert c.session not in text and c.session.removeprefix("cs_test_") not in text
    assert dev.webhook_secret not in text and "sk_test" not in text
