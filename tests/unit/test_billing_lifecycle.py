"""Billing's lifecycle: what a subscription's state makes of a server (suspend, final
backup, delete), the namespace's removal, and the webhook's subscription and signature."""

from __future__ import annotations

import json
from typing import Any

import pytest
from vpes_billing import naming as n
from vpes_billing.lifecycle import Removal, decide, parse_stamp, removal, stamp
from vpes_billing.service import invoice_subscription
from vpes_billing.stripe_gateway import StripeGateway, SubscriptionState
from vpes_devcluster.billing_dev import event, sign

from tests.unit.billing_support import SECRET

pytestmark = pytest.mark.unit

pytestmark = pytest.mark.unit

GRACE, RETENTION, NOW = 100.0, 1000.0, 1_800_000_000.0


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
        # The first payment has not gone through: no running server.
        ("incomplete", {}, NOW, True, False, False),
        # A status this code does not know: keeps what there is.
        ("some_new_status", {}, NOW, False, False, False),
        ("some_new_status", {n.ANNOTATION_SUSPENDED_BY: "payment"}, NOW, True, False, False),
    ],
)
def test_decide(
    status: str, marks: dict[str, str], now: float, suspended: bool, backup: bool, delete: bool
) -> None:
    d = run(status, marks, now)
    assert (d.suspended, d.final_backup, d.delete) == (suspended, backup, delete)
    assert d.annotations[n.ANNOTATION_STATUS] == status


@pytest.mark.parametrize("status", ["incomplete", "incomplete_expired"])
def test_an_unpaid_first_subscription_gets_no_running_server(status: str) -> None:
    first = run(status)
    assert first.suspended
    assert first.annotations[n.ANNOTATION_SUSPENDED_BY] in {"incomplete", "cancellation"}
    # Still unpaid later (sweeps, replays): still suspended.
    assert run(status, first.annotations, NOW + 10 * GRACE).suspended


def test_an_incomplete_subscription_runs_once_paid() -> None:
    marks = run("incomplete").annotations
    paid = run("active", marks)
    assert not paid.suspended and n.ANNOTATION_SUSPENDED_BY not in paid.annotations


@pytest.mark.parametrize(
    ("phase", "overdue", "verdict"),
    [
        ("Completed", 0.0, Removal.REMOVE),
        ("Completed", 1e9, Removal.REMOVE),
        (None, 0.0, Removal.WAIT),
        ("Pending", 10.0, Removal.WAIT),
        ("Running", 99.0, Removal.WAIT),
        # A failed final backup keeps the namespace as long as any other phase does.
        ("Failed", 99.0, Removal.WAIT),
        ("Failed", 100.0, Removal.GIVE_UP),
        ("Running", 100.0, Removal.GIVE_UP),
        (None, 1e9, Removal.GIVE_UP),
    ],
)
def test_removal_waits_for_a_completed_final_backup(
    phase: str | None, overdue: float, verdict: Removal
) -> None:
    assert removal(phase, overdue, wait_seconds=100.0) is verdict


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
