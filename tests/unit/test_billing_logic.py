"""Billing's pure parts: lifecycle decisions, signup validation, names, quota, signatures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from vpes_billing import builders
from vpes_billing import naming as n
from vpes_billing.builders import Plan, Signup, quota
from vpes_billing.lifecycle import Removal, decide, parse_stamp, removal, stamp
from vpes_billing.logsafe import redact
from vpes_billing.service import invoice_subscription, signup_key
from vpes_billing.settings import Settings
from vpes_billing.signup import SignupError, SignupForm, parse, start
from vpes_billing.stripe_gateway import CheckoutSession, StripeGateway, SubscriptionState
from vpes_billing.web import BodyLimit
from vpes_devcluster.billing_dev import event, sign
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.quantity import parse_quantity

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


def test_body_limit_through_starlette_counts_every_refusal() -> None:
    """Declared and streamed (chunked) bodies over the limit: 413, never Starlette's
    500, and each refusal counted."""

    async def echo(request: Request) -> Response:
        return Response(str(len(await request.body())))

    refused: list[int] = []
    app = BodyLimit(
        Starlette(routes=[Route("/", echo, methods=["POST"])]), 10, lambda: refused.append(1)
    )

    def chunks(n: int) -> Any:
        for _ in range(n):
            yield b"x" * 4

    with TestClient(app) as client:
        assert client.post("/", content=b"x" * 10).text == "10"
        assert client.post("/", content=chunks(2)).text == "8"
        assert refused == []
        assert client.post("/", content=b"x" * 11).status_code == 413
        assert len(refused) == 1
        r = client.post("/", content=chunks(3))
        assert r.status_code == 413 and r.text == "request body too large"
        assert len(refused) == 2


TOKEN = "vpes-c-0123456789abcdef." + "S3cr3t_" * 6 + "x"
SESSION = "cs_test_" + "a1B2" * 15
KEY = "K3y-_" * 8 + "abc"


@pytest.mark.parametrize(
    "line",
    [
        f'127.0.0.1:5 - "GET /password/{TOKEN} HTTP/1.1" 200',
        f'127.0.0.1:5 - "POST /password/{TOKEN}?x=1 HTTP/1.1" 422',
        f'127.0.0.1:5 - "GET /signup/return?session_id={SESSION} HTTP/1.1" 200',
        f'"GET /signup/status?foo=1&session_id={SESSION}&b=2 HTTP/1.1"',
        f"looked up {SESSION} and {TOKEN}",
        f'127.0.0.1:5 - "GET /signup/return?key={KEY} HTTP/1.1" 200',
        f'"GET /signup/status?foo=1&key={KEY}&b=2 HTTP/1.1"',
        f"success_url: https://billing.test/signup/return?key={KEY}",
    ],
)
def test_redact_removes_tokens_and_session_ids(line: str) -> None:
    clean = redact(line)
    assert TOKEN.split(".")[1] not in clean and SESSION not in clean and KEY not in clean
    assert "[redacted]" in clean
    assert redact("GET /healthz HTTP/1.1 200") == "GET /healthz HTTP/1.1 200"


def test_redact_removes_stripe_keys_an_error_echoes() -> None:
    line = "Authorization was 'Bearer sk_test_4eC39Hq'; rk_live_abc whsec_0123abc_x"
    assert redact(line) == (
        "Authorization was 'Bearer sk_test_[redacted]'; rk_live_[redacted] whsec_[redacted]"
    )


@pytest.mark.parametrize("value", ["sub_123\n", "sub_123\r\n", " sub_123"])
def test_ids_with_a_trailing_newline_are_not_valid(value: str) -> None:
    # Python's `$` matches before a final newline: every pattern must match whole.
    assert not n.valid_stripe_id(value, "sub_")
    assert n.label_value(value).startswith("h-")


def test_signup_keys_and_link_tokens_must_match_whole() -> None:
    from vpes_billing.links import TOKEN
    from vpes_billing.routes import _key

    key = n.new_signup_key()
    assert _key(key) == key and n.SIGNUP_KEY.fullmatch(key)
    assert _key(key + "\n") is None and _key(key[:-1]) is None
    # A Checkout Session id is not a signup key: it proves nothing.
    assert _key(SESSION) is None
    token = "vpes-c-0123456789abcdef." + "A" * 43
    assert TOKEN.fullmatch(token) and not TOKEN.fullmatch(token + "\n")


@pytest.mark.parametrize("name", ["www", "postmaster", "WebMail", "mx"])
def test_reserved_subdomains_are_refused(name: str) -> None:
    form = {"plan": "basic", "email": "a@example.net", "subdomain": name}
    with pytest.raises(SignupError, match="is reserved"):
        parse(settings(provider_domain="mail.test"), form)


def test_a_provider_adds_reserved_subdomains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_x")
    monkeypatch.setenv("VPES_PROVIDER_DOMAIN", "mail.test")
    monkeypatch.setenv("VPES_RESERVED_SUBDOMAINS", " Shop, , news ")
    configured = Settings.from_env()
    assert {"shop", "news", "www"} <= configured.reserved_subdomains
    with pytest.raises(SignupError, match="is reserved"):
        parse(configured, {"plan": "basic", "email": "a@example.net", "subdomain": "shop"})
    assert parse(configured, {"plan": "b", "email": "a@example.net", "subdomain": "alice"})


# -- the signup key: the return URL's secret, of which only the hash is stored ---------


class FakeKube:
    """What `signup.start` reads: one plan for sale, no server, no domain claim."""

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Any:
        if kind == "MailPlan" and name == "basic":
            return {"metadata": {"name": name}, "spec": {"stripePriceId": "price_basic"}}
        return None

    def list(self, api_version: str, kind: str, *args: Any, **kw: Any) -> list[Any]:
        return []


class FakeStripe:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def create_checkout(self, **kw: Any) -> CheckoutSession:
        self.calls.append(kw)
        return CheckoutSession("cs_test_" + "z" * 40, "https://checkout.stripe.test/x")


def test_signup_gives_stripe_the_key_hash_and_the_browser_the_key() -> None:
    stripe = FakeStripe()
    form = SignupForm(plan="basic", email="a@example.net", domain="example.org", mailbox="me")
    key = n.new_signup_key()
    kube: Any = FakeKube()
    gateway: Any = stripe
    start(kube, gateway, settings(public_url="https://billing.test"), form, key)
    [call] = stripe.calls
    # The browser comes back with the key, not with the Checkout Session id.
    assert call["success_url"] == f"https://billing.test/signup/return?key={key}"
    assert "CHECKOUT_SESSION_ID" not in call["success_url"]
    # Stripe's metadata (and so the webhook, and the cluster) gets only the hash.
    assert call["metadata"][n.METADATA_SIGNUP_KEY] == n.signup_key_digest(key)
    assert key not in json.dumps(call["metadata"])
    assert n.new_signup_key() != key


def test_the_cluster_keeps_the_key_hash_never_the_key_or_session_id() -> None:
    key = n.new_signup_key()
    digest = n.signup_key_digest(key)
    assert len(digest) == 60 and n.valid_signup_key_digest(digest)
    assert not n.valid_signup_key_digest(key) and not n.valid_signup_key_digest(digest + "\n")
    session = {"id": SESSION, "metadata": {n.METADATA_SIGNUP_KEY: digest}}
    assert signup_key(session) == digest
    # A session the form did not make, or metadata that is not a hash: no key at all.
    assert signup_key({"id": SESSION, "metadata": {}}) is None
    assert signup_key({"id": SESSION, "metadata": {n.METADATA_SIGNUP_KEY: key}}) is None
    su = Signup("cus_1", "sub_1", "a@example.net", "example.org", "me", signup_key=digest)
    plan = Plan("basic", MailPlanSpec.model_validate({}))
    server = builders.server(su, plan, suspended=False)
    assert server["metadata"]["labels"][n.LABEL_SIGNUP_KEY] == digest
    for obj in (server, builders.namespace(su)):
        text = json.dumps(obj)
        assert key not in text and SESSION not in text
        assert (
            n.LEGACY_ANNOTATION_CHECKOUT not in text and n.LEGACY_LABEL_CHECKOUT + '"' not in text
        )
    unkeyed = builders.server(
        Signup("cus_1", "sub_1", "a@x.org", "x.org", "me"), plan, suspended=False
    )
    assert n.LABEL_SIGNUP_KEY not in unkeyed["metadata"]["labels"]


# -- settings from the environment: a bad value is named, not a traceback ---------------


@pytest.fixture
def billing_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_x")
    for name in ("VPES_BILLING_SIGNUP_BURST", "VPES_BILLING_SIGNUP_EVERY_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_signup_rate_settings_from_env(billing_env: pytest.MonkeyPatch) -> None:
    defaults = Settings.from_env()
    assert (defaults.signup_burst, defaults.signup_every_seconds) == (5, 120.0)
    billing_env.setenv("VPES_BILLING_SIGNUP_BURST", " 12 ")
    billing_env.setenv("VPES_BILLING_SIGNUP_EVERY_SECONDS", "7.5")
    configured = Settings.from_env()
    assert (configured.signup_burst, configured.signup_every_seconds) == (12, 7.5)
    billing_env.setenv("VPES_BILLING_SIGNUP_BURST", "")
    assert Settings.from_env().signup_burst == 5


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("VPES_BILLING_SIGNUP_BURST", "five", "must be a whole number, not 'five'"),
        ("VPES_BILLING_SIGNUP_BURST", "2.5", "must be a whole number, not '2.5'"),
        ("VPES_BILLING_SIGNUP_BURST", "0", "must be 1 or more, not '0'"),
        ("VPES_BILLING_SIGNUP_BURST", "-3", "must be 1 or more, not '-3'"),
        ("VPES_BILLING_SIGNUP_EVERY_SECONDS", "2m", "must be more than zero seconds, not '2m'"),
        ("VPES_BILLING_SIGNUP_EVERY_SECONDS", "0", "must be more than zero seconds, not '0'"),
        ("VPES_BILLING_SIGNUP_EVERY_SECONDS", "nan", "must be more than zero seconds, not 'nan'"),
        ("VPES_BILLING_GRACE_SECONDS", "7d", "must be zero or more seconds, not '7d'"),
        ("VPES_BILLING_GRACE_SECONDS", "-1", "must be zero or more seconds, not '-1'"),
    ],
)
def test_a_bad_setting_names_its_variable(
    billing_env: pytest.MonkeyPatch, name: str, raw: str, message: str
) -> None:
    billing_env.setenv(name, raw)
    with pytest.raises(SystemExit) as info:
        Settings.from_env()
    assert str(info.value) == f"{name} {message}"


@pytest.mark.parametrize(
    ("quantity", "doubled"),
    [
        ("50m", "100m"),
        ("1500m", "3000m"),
        ("1.5", "3"),
        ("0.3", "0.6"),
        ("2", "4"),
        ("256Mi", "512Mi"),
        ("1Gi", "2Gi"),
        ("0.75Gi", "1.5Gi"),
        ("100k", "200k"),
        ("128974848", "257949696"),  # not "2.5795e+08", which is no quantity
        ("1e3", "2000"),
    ],
)
def test_quota_doubles_quantities_exactly(quantity: str, doubled: str) -> None:
    assert builders._double(quantity) == doubled
    assert parse_quantity(doubled) == 2 * parse_quantity(quantity)


def test_quota_doubling_refuses_what_is_no_quantity() -> None:
    with pytest.raises(ValueError, match="lots"):
        builders._double("lots")
