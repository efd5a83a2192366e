"""Webmail end to end, in a real browser (Debian's Chromium driven by Playwright):
the chart installs the platform with its edge and the shared Roundcube (and its
PostgreSQL) on the real node, as a provider installs it; three customers, two on a
plan with webmail, one on a plan without.

A mailbox user logs in to webmail, writes to a user of another customer (out
through the login proxy's submission, the tenant, the relay; in through the MX),
and the message is read there over IMAP; the second user sets a vacation reply in
webmail's settings (ManageSieve through the proxy) and the first gets the
auto-reply; a message marked as junk in webmail reaches the antispam's training
(that user's Bayes in Rspamd's Redis); the customer whose plan has no webmail is
refused with the gate's sentence; a password changed in webmail (through the
panel's internal port) becomes the one the mailbox logs in with.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from kubernetes import client
from playwright.sync_api import Browser, Page, expect
from vpes_devcluster import Cluster, chart, demo_mail, demo_panel, node_config, published_dns
from vpes_devcluster.node import build_images
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from tests import browser
from tests.e2e import support
from tests.images.rspamd_support import redis
from tests.integration.operator_support import wait_for, wait_ready

RELEASE = "wm"
NAMESPACE = "vpes-wm"
GATE = "Webmail is not part of this mailbox's plan."


@dataclass(frozen=True)
class Platform:
    webmail: str  # http://<ClusterIP>
    proxy: str
    redis: str
    redis_password: str


def _cluster_ip(core: client.CoreV1Api, name: str) -> str:
    svc = core.read_namespaced_service(name, NAMESPACE)
    assert svc.spec is not None
    return str(svc.spec.cluster_ip)


@pytest.fixture(scope="module")
def platform(
    cluster: Cluster, core: client.CoreV1Api, images: dict[str, str]
) -> Iterator[Platform]:
    built = build_images("operator", "edge", "rspamd", "webmail", "webmail-db")
    cluster.real_node().import_images(built.values())
    values = chart.values(
        built["operator"],
        images["tenant"],
        images["backup"],
        bcrypt_rounds=4,
        dkim_key_bits=1024,
        edge_image=built["edge"],
        antispam_image=built["rspamd"],
        dav_image=images["dav"],
        webmail_image=built["webmail"],
        webmail_db_image=built["webmail-db"],
    )
    values["operator"]["replicas"] = 1
    values["billing"]["enabled"] = False
    values["plans"] = []  # cluster-wide objects: the test makes its own plans
    values["dns"]["outboundAddresses"] = [node_config.POD_CIDR]
    values["tenant"]["readinessPeriodSeconds"] = support.READINESS_SECONDS
    chart.install(cluster, RELEASE, NAMESPACE, values, timeout="8m")
    try:
        secret = core.read_namespaced_secret(f"{RELEASE}-antispam", NAMESPACE)
        password = base64.b64decode((secret.data or {})["redis-password"]).decode()
        yield Platform(
            webmail=f"http://{_cluster_ip(core, f'{RELEASE}-webmail')}",
            proxy=_cluster_ip(core, f"{RELEASE}-edge-proxy"),
            redis=_cluster_ip(core, f"{RELEASE}-antispam-redis"),
            redis_password=password,
        )
    finally:
        chart.uninstall(cluster, RELEASE, NAMESPACE)
        core.delete_namespace(NAMESPACE)


@pytest.fixture(scope="module")
def customers(
    cluster: Cluster, api: Kube, core: client.CoreV1Api, platform: Platform
) -> Iterator[dict[str, str]]:
    ns = support.make_namespace(core, f"webmail-{uuid.uuid4().hex[:6]}")
    with_webmail = support.small_plan(api, features={"webmail": True})
    without = support.small_plan(api, features={"webmail": False})
    addresses = {
        "ann": support.create_server(api, ns, "ann", with_webmail, "ann-wm.example"),
        "bob": support.create_server(api, ns, "bob", with_webmail, "bob-wm.example"),
        "cat": support.create_server(api, ns, "cat", without, "cat-wm.example"),
    }
    try:
        for name in addresses:
            wait_ready(api, ns, name, timeout=240)
        published_dns.publish_servers(cluster, [(ns, "ann"), (ns, "bob")])
        # The login proxy routes each of them (the edge maps reached its pod).
        for address in addresses.values():
            wait_for(
                lambda a=address: _logs_in(platform.proxy, a),
                f"{address} logging in through the proxy",
                timeout=180,
                interval=3,
            )
        # The webmail pod's copy of the allowed domains (the same ConfigMap, which the
        # kubelet refreshes for each pod on its own schedule) lists both webmail
        # customers: each logs in over HTTP once.
        for name in ("ann", "bob"):
            demo_panel.webmail_check(platform.webmail, addresses[name], support.PASSWORD, 240)
        yield addresses
    finally:
        core.delete_namespace(ns)
        for plan in (with_webmail, without):
            api.delete(API_VERSION, "MailPlan", None, plan)


def _logs_in(proxy: str, address: str, password: str = support.PASSWORD) -> bool:
    """Whether `address` logs in over IMAP through the proxy (a search finds nothing)."""
    with contextlib.suppress(Exception):
        demo_mail.fetch(proxy, address, password, "no such subject")
        return True
    return False


@pytest.fixture(scope="module")
def chromium(platform: Platform) -> Iterator[Browser]:
    with browser.chromium() as b:
        yield b


@pytest.fixture
def page(chromium: Browser, platform: Platform) -> Iterator[Page]:
    """A fresh browser context per test: one test's session never leaks into the next."""
    context = chromium.new_context(base_url=platform.webmail)
    try:
        yield context.new_page()
    finally:
        context.close()


def login(page: Page, address: str) -> None:
    page.goto("/")
    page.fill("input[name=_user]", address)
    page.fill("input[name=_pass]", support.PASSWORD)
    page.click("button[type=submit]")


def in_mail(page: Page) -> None:
    """After a login: the mailbox shown, and its first requests (the message list) done.
    Leaving earlier races them: a request still in flight writes back the session it
    read, without what the next page stored in it (a compose session, for one)."""
    page.wait_for_url("**/?_task=mail**", timeout=60_000)
    ready(page)


def ready(page: Page) -> None:
    """Wait until Roundcube is idle: it drops any command given while a request is in flight."""
    page.wait_for_function("() => window.rcmail && rcmail.env.task && !rcmail.busy", timeout=60_000)


def logout(page: Page) -> None:
    ready(page)
    page.evaluate("() => rcmail.command('logout')")
    page.wait_for_selector("input[name=_user]", timeout=60_000)


def test_a_plan_without_webmail_is_refused_with_a_clear_sentence(
    page: Page, customers: dict[str, str]
) -> None:
    login(page, customers["cat"])
    expect(page.get_by_text(GATE)).to_be_visible(timeout=30_000)
    assert "_task=mail" not in page.url


def test_write_to_another_customer_and_read_it_there_over_imap(
    page: Page, platform: Platform, customers: dict[str, str]
) -> None:
    ann, bob = customers["ann"], customers["bob"]
    subject = f"from webmail {uuid.uuid4().hex[:8]}"
    login(page, ann)
    in_mail(page)
    page.goto("/?_task=mail&_action=compose")
    try:
        page.wait_for_selector("#compose-subject", timeout=60_000)
    except Exception as e:
        raise AssertionError(
            f"no compose form at {page.url}: {page.inner_text('body')[:600]}"
        ) from e
    page.locator("#compose_to input").first.fill(bob + ",")
    page.fill("#compose-subject", subject)
    page.fill("#composebody", "Written in Roundcube, read over IMAP.\n")
    browser.screenshot(page, "webmail-compose")
    ready(page)
    page.evaluate("() => rcmail.command('send', {})")
    # Sent: Roundcube leaves the compose page for the mailbox.
    page.wait_for_url(lambda url: "_action=compose" not in url, timeout=60_000)
    got = wait_for(
        lambda: demo_mail.fetch(platform.proxy, bob, support.PASSWORD, subject),
        "the message in bob's inbox",
        timeout=240,
        interval=5,
    )
    assert b"Written in Roundcube, read over IMAP." in got
    logout(page)


def test_a_vacation_set_in_webmail_answers(
    page: Page, platform: Platform, customers: dict[str, str]
) -> None:
    ann, bob = customers["ann"], customers["bob"]
    reason = f"Away until Monday {uuid.uuid4().hex[:6]}"
    login(page, bob)
    in_mail(page)
    page.goto("/?_task=settings&_action=plugin.managesieve-vacation&_framed=1")
    page.select_option("select[name=vacation_status]", "on")
    page.fill("input[name=vacation_subject]", "Away")
    page.fill("textarea[name=vacation_reason]", reason)
    ready(page)
    page.evaluate("() => rcmail.command('plugin.managesieve-save')")
    expect(page.get_by_text("saved successfully")).to_be_visible(timeout=30_000)
    page.goto("/?_task=mail")
    logout(page)
    subject = f"are you there {uuid.uuid4().hex[:6]}"
    demo_mail.submit(platform.proxy, (ann, support.PASSWORD), bob, subject)
    reply = wait_for(
        lambda: demo_mail.fetch(platform.proxy, ann, support.PASSWORD, "Away"),
        "bob's vacation reply in ann's inbox",
        timeout=240,
        interval=5,
    )
    assert reason.encode() in reply


def test_junk_marked_in_webmail_trains_the_antispam(
    page: Page, platform: Platform, customers: dict[str, str]
) -> None:
    ann, bob = customers["ann"], customers["bob"]
    subject = f"cheap watches {uuid.uuid4().hex[:6]}"
    body = " ".join(["Buy cheap replica watches today, limited offer!"] * 40)
    demo_mail.submit(platform.proxy, (bob, support.PASSWORD), ann, subject, body=body)
    wait_for(
        lambda: demo_mail.fetch(platform.proxy, ann, support.PASSWORD, subject),
        "the message in ann's inbox",
        timeout=240,
        interval=5,
    )

    def learned() -> int:
        value = redis(
            platform.redis, "HGET", f"RS{ann}", "learns_spam", password=platform.redis_password
        )
        return int(value or 0)

    before = learned()
    login(page, ann)
    in_mail(page)
    row = page.locator("#messagelist tr", has_text=subject)
    row.click()
    # The list selects on its own mouse handlers; the plugin enables its command then.
    page.wait_for_function(
        "() => rcmail.message_list.get_selection().length == 1"
        " && rcmail.commands['plugin.markasjunk.junk'] && !rcmail.busy",
        timeout=30_000,
    )
    page.evaluate("() => rcmail.command('plugin.markasjunk.junk', {})")
    wait_for(
        lambda: demo_mail.fetch(platform.proxy, ann, support.PASSWORD, subject, folder="Junk"),
        "the message moved into ann's Junk",
        timeout=60,
        interval=2,
    )
    browser.screenshot(page, "webmail-inbox")
    logout(page)
    wait_for(lambda: learned() > before, "ann's Bayes learning the spam", timeout=120)


def test_a_password_changed_in_webmail_is_the_mailbox_password(
    page: Page, platform: Platform, customers: dict[str, str]
) -> None:
    """Roundcube's password plugin → the panel's internal port (through the chart's
    NetworkPolicy) → the customer's Secret → the operator → the tenant's own hashes:
    a weak password is refused with the panel's reason, a good one is then the one
    that logs in over IMAP, and the old one no longer does."""
    bob = customers["bob"]
    new = f"Lantern-{uuid.uuid4().hex[:10]}-Orchard"
    login(page, bob)
    in_mail(page)
    page.goto("/?_task=settings&_action=plugin.password")

    def save(password: str) -> None:
        ready(page)
        page.fill("input[name=_curpasswd]", support.PASSWORD)
        page.fill("input[name=_newpasswd]", password)
        page.fill("input[name=_confpasswd]", password)
        page.evaluate("() => rcmail.command('plugin.password-save')")

    save("short")
    expect(page.get_by_text("Use at least")).to_be_visible(timeout=30_000)
    assert _logs_in(platform.proxy, bob), "the refused change must keep the old password"
    save(new)
    expect(page.get_by_text("Successfully saved")).to_be_visible(timeout=30_000)
    wait_for(
        lambda: _logs_in(platform.proxy, bob, new),
        "bob logging in over IMAP with the password set in webmail",
        timeout=180,
        interval=3,
    )
    assert not _logs_in(platform.proxy, bob), "the old password still logs in"
