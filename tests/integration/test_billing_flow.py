"""Billing against the real control plane, the real operator and stripe-mock.

The billing service runs in process (its ASGI app through Starlette's test
client) as the chart's billing ServiceAccount, under the chart's admission
policy; the operator runs as a subprocess as the chart's operator
ServiceAccount, so Ready is real. One test runs the real server
(`python -m vpes_billing`, uvicorn) through `billing_dev.start_billing`.
Webhook payloads are signed with a test secret exactly as Stripe signs them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from vpes_billing import naming as n
from vpes_billing.service import BillingService
from vpes_devcluster.billing_dev import (
    sign,
)
from vpes_operator import API_VERSION, crypto

from . import billing_support
from .billing_support import (
    GRACE,
    RETENTION,
    TOKENS,
    WEBHOOK_SECRET,
    Billing,
    Customer,
    secret_value,
    signed_up,
)
from .operator_support import (
    SECRET_VALUES,
    plan_body,
    wait_for,
    wait_ready,
)

# The service and the operator, shared with the other billing module.
operator = billing_support.operator
billing = billing_support.billing

# Starlette's test client warns that it will move to httpx2; the app is unaffected.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:starlette.testclient")


def test_signup_checkout_to_ready_and_password_link(billing: Billing) -> None:
    b, c = billing, Customer.new()
    r = b.client.get(f"/signup?plan={b.plan_a}")
    assert r.status_code == 200 and "mail.provider.test" in r.text
    r = b.client.post(
        "/signup", data={"plan": b.plan_a, "email": c.email, "domain": c.domain, "mailbox": "alice"}
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("https://checkout.stripe.com/")

    r = b.client.get(f"/signup/status?key={c.key}")
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
    # Neither the Checkout Session id nor the signup key is written anywhere: only the
    # key's hash, on the server, by which the return page finds it.
    assert n.LEGACY_ANNOTATION_CHECKOUT not in ann
    assert found[0]["metadata"]["labels"][n.LABEL_SIGNUP_KEY] == n.signup_key_digest(c.key)
    for obj in (found[0], namespace):
        assert c.session not in json.dumps(obj) and c.key not in json.dumps(obj)
    spec = found[0]["spec"]
    assert spec["domains"] == [c.domain] and spec["owner"]["email"] == c.email
    assert spec["mailboxes"][0]["address"] == f"alice@{c.domain}"

    wait_ready(b.admin, ns, n.SERVER_NAME, timeout=120)
    pods = b.admin.list("v1", "Pod", ns, labels=f"vpes.io/server={n.SERVER_NAME}")
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
    state = b.client.get(f"/signup/status?key={c.key}").json()
    assert state["state"] == "server" and state["ready"] is True
    page = b.client.get(f"/signup/return?key={c.key}")
    assert "Your server is ready" in page.text

    # The one-time password link: issued once, used once, only its hash stored.
    r = b.client.post("/signup/password-link", data={"key": c.key})
    assert r.status_code == 303
    token = r.headers["location"].removeprefix("/password/")
    TOKENS.add(token)
    link = b.admin.get("v1", "Secret", ns, n.PASSWORD_LINK_SECRET)
    assert link is not None and token.split(".")[1] not in json.dumps(link)
    again = b.client.post("/signup/password-link", data={"key": c.key})
    assert again.status_code == 409
    assert b.client.get(f"/password/{token}").status_code == 200
    short = b.client.post(f"/password/{token}", data={"password": "short", "confirm": "short"})
    assert short.status_code == 422 and "at least 12 characters" in short.text
    common = b.client.post(
        f"/password/{token}", data={"password": "password1234", "confirm": "password1234"}
    )
    assert common.status_code == 422 and "leaked in breaches" in common.text
    pw = "correct horse battery staple"
    SECRET_VALUES.add(pw)
    r = b.client.post(f"/password/{token}", data={"password": pw, "confirm": pw})
    assert r.status_code == 200, r.text
    # Only its hash is stored (the operator takes it as it is).
    stored = secret_value(b.admin, ns, n.FIRST_PASSWORD_SECRET, "password")
    assert crypto.is_password_hash(stored) and crypto.verify_password(pw, stored)
    r = b.client.post(f"/password/{token}", data={"password": pw + "2", "confirm": pw + "2"})
    assert r.status_code == 410
    assert secret_value(b.admin, ns, n.FIRST_PASSWORD_SECRET, "password") == stored
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
    page = b.client.get(f"/signup/return?key={second.key}")
    assert "already served by another customer" in page.text


# -- what billing's ServiceAccount may not do (chart: billing-rbac.yaml) ---------------
