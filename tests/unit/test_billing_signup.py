"""Billing's signup: the form's checks, reserved subdomains, stable names, and the
signup key (the return URL's secret, of which only the hash is stored)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from vpes_billing import builders
from vpes_billing import naming as n
from vpes_billing.builders import Plan, Signup
from vpes_billing.service import signup_key
from vpes_billing.settings import Settings
from vpes_billing.signup import SignupError, SignupForm, parse, start
from vpes_billing.stripe_gateway import CheckoutSession
from vpes_operator.models.plan import MailPlanSpec

from tests.unit.billing_support import SESSION, settings

pytestmark = pytest.mark.unit

pytestmark = pytest.mark.unit


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
