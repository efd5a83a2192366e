"""A customer's whole way in, in a real browser (Debian's Chromium driven by
Playwright): sign up through Stripe test mode (stripe-mock), set the password
through the one-time link, log in to the panel, add a domain and see its records,
add a mailbox (a weak password refused with the reason, then a good one), log in
over IMAP with it against the tenant on the real node, enable TOTP, log out and
back in with a code. Screenshots of the main pages go to docs/screenshots/.

Billing and the panel run in this process (as in the integration tier, each as its
chart ServiceAccount); the operator as its own; the servers on the real node.
Stripe's hosted Checkout page is played by the test: it delivers the signed
`checkout.session.completed` event Stripe would send, for the session billing
really created at stripe-mock, then sends the browser back to billing's return
page."""

from __future__ import annotations

import contextlib
import imaplib
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from playwright.sync_api import Page, Route, expect
from vpes_billing.service import BillingService
from vpes_billing.settings import Settings as BillingSettings
from vpes_billing.stripe_gateway import CheckoutSession, StripeGateway
from vpes_billing.web import build_app as billing_app
from vpes_devcluster import Cluster
from vpes_devcluster.billing_dev import checkout_session, event, sign
from vpes_devcluster.billing_rbac import install_billing, kube_for
from vpes_devcluster.kubeconfig import api_client
from vpes_devcluster.platform import install_rbac
from vpes_devcluster.stripe_mock import StripeMock
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_panel.app import build_app as panel_app
from vpes_panel.settings import Settings as PanelSettings

from tests import browser, panel_web
from tests.e2e import support
from tests.integration.operator_support import plan_body, wait_for
from tests.integration.panel_support import (
    OPERATOR_PANEL_ENV,
    PANEL_NAMESPACE,
    PANEL_RBAC,
    PANEL_SA,
)

WEBHOOK_SECRET = "whsec_e2e_" + "p" * 24


class RecordingGateway(StripeGateway):
    """The real gateway (every call goes to stripe-mock), remembering the Checkout
    Sessions it made: the test plays Stripe's hosted page for them."""

    made: list[dict[str, Any]]

    def create_checkout(self, **kwargs: Any) -> CheckoutSession:
        session = super().create_checkout(**kwargs)
        self.made.append({**kwargs, "id": session.id})
        return session


@dataclass
class Web:
    billing: str
    panel: str
    gateway: RecordingGateway
    stripe: StripeMock
    plan: str
    price: str
    admin: Kube
    passwords: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def web(
    cluster: Cluster, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Web]:
    op_iter = support.start_operator(
        cluster,
        images["tenant"],
        tmp_path_factory.mktemp("panel-flow-operator"),
        **OPERATOR_PANEL_ENV,
    )
    next(op_iter)
    admin = Kube(cluster.api_client(), field_manager="tests")
    stripe = StripeMock(Path(tmp_path_factory.mktemp("panel-flow-stripe")))
    stripe.start()
    tag = uuid.uuid4().hex[:6]
    plan, price = f"flow-{tag}", f"price_flow{tag}"
    admin.apply(
        plan_body(
            plan,
            stripePriceId=price,
            displayName="Personal",
            resources={"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
            backup={"enabled": False},
            maxDomains=2,
        )
    )
    billing_port, panel_port = panel_web.free_port(), panel_web.free_port()
    billing_url, panel_url = f"http://127.0.0.1:{billing_port}", f"http://127.0.0.1:{panel_port}"
    bsettings = BillingSettings(
        stripe_api_key="sk_test_123",
        webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe.url,
        public_url=billing_url,
        sweep_seconds=0,
    )
    gateway = RecordingGateway(bsettings.stripe_api_key, WEBHOOK_SECRET, stripe.url)
    gateway.made = []
    service = BillingService(bsettings, kube_for(install_billing(cluster)), gateway)
    panel_sa = Kube(
        api_client(install_rbac(cluster, PANEL_NAMESPACE, PANEL_RBAC, PANEL_SA, "panel")),
        field_manager="vpes-panel",
    )
    psettings = PanelSettings(
        public_url=panel_url,
        session_key=secrets.token_hex(32).encode(),
        bcrypt_rounds=4,
        directory_seconds=0.0,
        stripe_api_key="sk_test_123",
        stripe_api_base=stripe.url,
    )
    served = [
        panel_web.Served(billing_app(service), billing_port),
        panel_web.Served(panel_app(psettings, panel_sa), panel_port),
    ]
    for s in served:
        s.start()
    try:
        yield Web(billing_url, panel_url, gateway, stripe, plan, price, admin)
    finally:
        for s in served:
            s.stop()
        stripe.stop()
        admin.delete(API_VERSION, "MailPlan", None, plan)
        with contextlib.suppress(StopIteration):
            next(op_iter)


def _pay(web: Web, route: Route) -> None:
    """Stripe's hosted Checkout, played: the customer pays; Stripe sends the signed
    event to billing's webhook, then shows the way back to the return URL."""
    made = web.gateway.made[-1]
    customer, subscription = f"cus_{secrets.token_hex(6)}", f"sub_{secrets.token_hex(6)}"
    web.stripe.set_subscription(customer=customer, status="active", price=web.price)
    session = checkout_session(
        session=made["id"],
        customer=customer,
        subscription=subscription,
        email=made["email"],
        domain=made["metadata"]["domain"],
        mailbox=made["metadata"]["mailbox"],
        plan=made["metadata"]["plan"],
    )
    session["metadata"] = dict(made["metadata"])
    body = json.dumps(event("checkout.session.completed", session)).encode()
    r = httpx.post(
        f"{web.billing}/stripe/webhook",
        content=body,
        headers={
            "Stripe-Signature": sign(body, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
        timeout=60,
    )
    assert r.status_code == 200, r.text
    route.fulfill(
        status=200,
        content_type="text/html",
        body=f'<!doctype html><title>Paid</title><a href="{made["success_url"]}">Return</a>',
    )


def test_sign_up_set_the_password_and_log_in_to_the_panel(web: Web) -> None:
    domain = f"flow{uuid.uuid4().hex[:6]}.example"
    owner = f"alice@{domain}"
    password = "amber-canyon-" + secrets.token_hex(4)
    web.passwords.add(password)
    with browser.chromium() as b:
        page = b.new_page(viewport={"width": 1100, "height": 900})
        sources: list[str] = []

        def shot(name: str) -> None:
            browser.screenshot(page, name)
            sources.append(page.content())

        page.route("https://checkout.stripe.com/**", lambda route: _pay(web, route))
        page.goto(f"{web.billing}/signup?plan={web.plan}")
        page.get_by_label("Your email address").fill(f"owner@{domain}.net")
        page.get_by_label("Your domain").fill(domain)
        page.get_by_label("Your first mailbox name").fill("alice")
        shot("signup")
        page.get_by_role("button", name="Continue to payment").click()
        page.get_by_role("link", name="Return").click()
        set_password = page.get_by_role("button", name="Set the password of your mailbox")
        expect(set_password).to_be_visible(timeout=300_000)
        set_password.click()
        page.get_by_label("New password").fill(password)
        page.get_by_label("Again").fill(password)
        page.get_by_role("button", name="Set password").click()
        expect(page.get_by_role("heading", name="Password set")).to_be_visible()

        # The operator takes the new hash into the server's logins within seconds.
        wait_for(lambda: _logged_in(page, web.panel, owner, password) or None, "login", 120)
        shot("overview")
        namespace = _namespace_of(web, domain)

        # A second domain, and the records to publish for it (computed by the operator).
        extra = f"news.{domain}"
        page.goto(f"{web.panel}/domains")
        page.locator("#domain").fill(extra)
        page.get_by_role("button", name="Add the domain").click()
        expect(page.locator(f"[id='domain-{extra}']")).to_be_visible()
        _until_shown(page, f"{web.panel}/domains/{extra}", "MX")
        expect(page.get_by_role("cell", name=extra, exact=True).first).to_be_visible()
        expect(page.get_by_text("10 mx.").first).to_be_visible()
        shot("domain-records")
        page.set_viewport_size({"width": 390, "height": 844})  # a phone: the table stacks
        shot("domain-records-phone")
        page.set_viewport_size({"width": 1100, "height": 900})

        # A mailbox: a breached password is refused with the reason, a good one works.
        bob, bob_password = f"bob@{domain}", "lintel-omelette-" + secrets.token_hex(4)
        web.passwords.add(bob_password)
        page.goto(f"{web.panel}/mailboxes")
        _new_mailbox(page, "bob", domain, "password1234")
        expect(page.locator("#password-error")).to_contain_text("leaked in breaches")
        assert "bob@" not in _mailboxes_in_spec(web, namespace)
        _new_mailbox(page, "bob", domain, bob_password)
        expect(page.locator(f"[id='mailbox-{bob}']")).to_be_visible()
        shot("mailboxes")
        page.goto(f"{web.panel}/plan")
        expect(page.get_by_text("Mailboxes").first).to_be_visible()
        shot("plan")
        host = support.service_ip(_admin(web), namespace, "mail", port=993)
        wait_for(lambda: _imap_works(host, bob, bob_password) or None, "bob's IMAP login", 120)

        # A second factor for the owner, then a login that needs its code.
        page.goto(f"{web.panel}/account")
        secret = page.locator("#totp-secret").inner_text().replace(" ", "")
        page.locator("#code").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Turn on my second factor").click()
        expect(page.get_by_text("On: logging in asks for your password")).to_be_visible()
        shot("account")
        page.get_by_role("button", name="Log out").first.click()
        _login(page, web.panel, owner, password)
        expect(page.locator("#code")).to_be_visible()
        # The next time step's code: the one just used for enrolment is never taken twice.
        page.locator("#code").fill(pyotp.TOTP(secret).at(time.time() + 30))
        page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("heading", name="Your mail server")).to_be_visible()
        sources.append(page.content())
    for value in web.passwords:
        assert all(value not in text for text in sources), "a password in a page"


def _login(page: Page, panel: str, address: str, password: str) -> None:
    page.goto(f"{panel}/login")
    page.locator("#address").fill(address)
    page.locator("#password").fill(password)
    page.get_by_role("button", name="Log in").click()


def _logged_in(page: Page, panel: str, address: str, password: str) -> bool:
    _login(page, panel, address, password)
    return page.get_by_role("heading", name="Your mail server").count() > 0


def _new_mailbox(page: Page, local: str, domain: str, password: str) -> None:
    page.locator("#local").fill(local)
    page.locator("#domain").select_option(domain)
    page.locator("#password").fill(password)
    page.locator("#confirm").fill(password)
    page.get_by_role("button", name="Create the mailbox").click()


def _until_shown(page: Page, url: str, text: str, timeout: float = 120) -> None:
    """Reload `url` until it shows `text` (the operator's status arrives meanwhile)."""
    wait_for(
        lambda: (page.goto(url) and text in page.content()) or None, f"{text} on {url}", timeout
    )


def _admin(web: Web) -> Kube:
    return web.admin


def _namespace_of(web: Web, domain: str) -> str:
    def found() -> str | None:
        for obj in web.admin.list(API_VERSION, "PersonalMailServer"):
            if domain in (obj.get("spec") or {}).get("domains", []):
                return str(obj["metadata"]["namespace"])
        return None

    return wait_for(found, f"the server of {domain}", 60)


def _mailboxes_in_spec(web: Web, namespace: str) -> str:
    obj = web.admin.get(API_VERSION, "PersonalMailServer", namespace, "mail") or {}
    return json.dumps((obj.get("spec") or {}).get("mailboxes") or [])


def _imap_works(host: str, address: str, password: str) -> bool:
    try:
        _imap_login(host, address, password)
    except (OSError, imaplib.IMAP4.error):
        return False
    return True


def _imap_login(host: str, address: str, password: str) -> None:
    client = imaplib.IMAP4_SSL(host, 993, ssl_context=support.tls(), timeout=30)
    try:
        client.login(address, password)
    finally:
        client.logout()
