"""Billing's pure parts: lifecycle decisions, signup validation, names, quota, signatures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from vpes_billing import naming as n
from vpes_billing.devtools import event, sign
from vpes_billing.lifecycle import decide, parse_stamp, stamp
from vpes_billing.service import invoice_subscription
from vpes_billing.settings import Settings
from vpes_billing.signup import SignupError, parse
from vpes_billing.stripe_gateway import StripeGateway, SubscriptionState
from vpes_billing.tenant import quota
from vpes_billing.web import BodyLimit
from vpes_operator.models.plan import MailPlanSpec

pytestmark = pytest.mark.unit

GRACE, RETENTION, NOW = 100.0, 1000.0, 1_800_000_000.0
SECRET = "whsec_unit"


def sub(status: str, price: str | None = "price_a") -> SubscriptionState:
    return SubscriptionState("sub_1", "cus_1", status, price)


def run(status: str, marks: dict[str, str] | None = None, now: float = NOW) -> Any:
    return decide(sub(status), marks or {}, now, grace_seconds=GRACE, retention_seconds=RETENTION)


@pytest.mark.parametrize(
    ("status", "marks", "now", "suspended", "backup", "delete"),
    [
        ("active", {}, NOW, False, False, False),
        ("trialing", {}, NOW, False, False, False),
        # First failure seen: grace starts now, not suspended yet.
        ("past_due", {}, NOW, False, False, False),
        # Failure seen GRACE ago: suspended.
        ("past_due", {n.ANNOTATION_PAYMENT_FAILED_AT: stamp(NOW - GRACE)}, NOW, True, False, False),
        ("unpaid", {n.ANNOTATION_PAYMENT_FAILED_AT: stamp(NOW - 10)}, NOW, False, False, False),
        # Paid again: resumed whatever came before.
        (
            "active",
            {
                n.ANNOTATION_PAYMENT_FAILED_AT: stamp(NOW - 5 * GRACE),
                n.ANNOTATION_SUSPENDED_BY: "payment",
            },
            NOW,
            False,
            False,
            False,
        ),
        ("canceled", {}, NOW, True, True, False),
        ("canceled", {n.ANNOTATION_CANCELLED_AT: stamp(NOW - RETENTION)}, NOW, True, True, True),
        ("incomplete_expired", {}, NOW, True, True, False),
        ("paused", {}, NOW, True, False, False),
        ("incomplete", {}, NOW, False, False, False),
    ],
)
def test_decide(
    status: str, marks: dict[str, str], now: float, suspended: bool, backup: bool, delete: bool
) -> None:
    d = run(status, marks, now)
    assert (d.suspended, d.final_backup, d.delete) == (suspended, backup, delete)
    assert d.annotations[n.ANNOTATION_STATUS] == status


def test_decide_is_independent_of_event_order() -> None:
    """Only Stripe's current state and the marks count: the same inputs, the same answer."""
    marks = {n.ANNOTATION_PAYMENT_FAILED_AT: stamp(NOW - 1)}
    assert run("active", marks) == run("active", {})
    first = run("past_due")
    assert first.annotations[n.ANNOTATION_PAYMENT_FAILED_AT] == stamp(NOW)
    assert first.revisit_at == NOW + GRACE
    later = run("past_due", first.annotations, NOW + GRACE)
    assert later.suspended and later.annotations[n.ANNOTATION_SUSPENDED_BY] == "payment"


def test_stamps_round_trip() -> None:
    assert parse_stamp(stamp(NOW)) == NOW
    assert parse_stamp("yesterday") is None and parse_stamp(None) is None


def settings(**kw: Any) -> Settings:
    return Settings(stripe_api_key="sk_test_x", webhook_secret=SECRET, **kw)


@pytest.mark.parametrize(
    ("form", "domain"),
    [
        ({"plan": "basic", "email": "A@Example.net", "domain": "Example.ORG."}, "example.org"),
        (
            {"plan": "basic", "email": "a@example.net", "domain": "bücher.example"},
            "xn--bcher-kva.example",
        ),
        ({"plan": "basic", "email": "a@example.net", "subdomain": "alice"}, "alice.mail.test"),
    ],
)
def test_signup_form_accepts(form: dict[str, str], domain: str) -> None:
    parsed = parse(settings(provider_domain="mail.test"), form)
    assert parsed.domain == domain and parsed.mailbox == "me"


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"plan": "", "email": "a@example.net", "domain": "x.org"}, "Choose a plan"),
        ({"plan": "basic", "email": "nope", "domain": "x.org"}, "email address"),
        ({"plan": "basic", "email": "a@example.net"}, "Enter the domain"),
        ({"plan": "basic", "email": "a@example.net", "domain": "x..org"}, "not a valid domain"),
        (
            {"plan": "basic", "email": "a@example.net", "domain": "x.org", "subdomain": "a"},
            "not both",
        ),
        ({"plan": "basic", "email": "a@example.net", "subdomain": "-bad"}, "lowercase letters"),
        (
            {"plan": "basic", "email": "a@example.net", "domain": "x.org", "mailbox": "a b"},
            "mailbox",
        ),
        (
            {"plan": "basic", "email": "a@example.net", "domain": "mail.test"},
            "not the domain itself",
        ),
    ],
)
def test_signup_form_refuses(form: dict[str, str], message: str) -> None:
    with pytest.raises(SignupError, match=message):
        parse(settings(provider_domain="mail.test"), form)


def test_subdomain_needs_a_provider_domain() -> None:
    with pytest.raises(SignupError, match="does not offer"):
        parse(settings(), {"plan": "p", "email": "a@example.net", "subdomain": "alice"})


def test_names_are_stable_and_valid() -> None:
    ns = n.namespace_for("sub_123")
    assert ns == n.namespace_for("sub_123") != n.namespace_for("sub_124")
    assert len(ns) <= 63 and ns.startswith("vpes-c-")
    assert n.label_value("cus_ABC") == "cus_ABC"
    long = "cs_test_" + "a" * 70
    assert n.label_value(long).startswith("h-") and len(n.label_value(long)) <= 63
    assert n.valid_stripe_id("sub_1", "sub_") and not n.valid_stripe_id("sub_1/../x", "sub_")


def test_quota_from_plan() -> None:
    plan = MailPlanSpec.model_validate({"storage": "5Gi"})
    hard = quota(plan)
    assert hard["requests.storage"] == "5Gi"
    assert hard["requests.cpu"] == "20m" and hard["requests.memory"] == "64Mi"
    assert hard["limits.memory"] == "256Mi" and hard["services.loadbalancers"] == "0"
    dedicated = MailPlanSpec.model_validate({"features": {"dedicatedAddress": True}})
    assert quota(dedicated)["services.loadbalancers"] == "1"


@pytest.mark.parametrize(
    ("invoice", "expected"),
    [
        ({"subscription": "sub_old"}, "sub_old"),
        ({"subscription": {"id": "sub_obj"}}, "sub_obj"),
        ({"parent": {"subscription_details": {"subscription": "sub_new"}}}, "sub_new"),
        ({}, None),
    ],
)
def test_invoice_subscription(invoice: dict[str, Any], expected: str | None) -> None:
    assert invoice_subscription(invoice) == expected


def test_signature_verification() -> None:
    gw = StripeGateway("sk_test_x", SECRET, "http://127.0.0.1:9")
    body = json.dumps(event("invoice.paid", {"id": "in_1"})).encode()
    assert gw.verify(body, sign(body, SECRET))["type"] == "invoice.paid"
    for bad in (None, "", "garbage", sign(body, "whsec_other"), sign(body, SECRET, 1)):
        with pytest.raises(ValueError, match=r"(?i)signature"):
            gw.verify(body, bad)
    with pytest.raises(ValueError, match="bad signature"):
        gw.verify(body + b" ", sign(body, SECRET))


def test_settings_keep_secrets_out_of_repr() -> None:
    text = repr(settings())
    assert SECRET not in text and "sk_test_x" not in text


def test_body_limit() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> int:
        sent: list[MutableMapping[str, Any]] = []
        queue = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]

        async def receive() -> dict[str, Any]:
            return queue.pop(0) if queue else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
        await BodyLimit(app, 10)(scope, receive, send)
        return int(sent[0]["status"])

    assert asyncio.run(call([(b"content-length", b"5")], [b"12345"])) == 200
    assert asyncio.run(call([(b"content-length", b"11")], [b"x" * 11])) == 413
    assert asyncio.run(call([], [b"x" * 6, b"x" * 6])) == 413
