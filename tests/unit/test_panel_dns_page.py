"""The DNS page of a domain, rendered: each record's verdict in words, what was found
when it is wrong, the operator's fix; what to publish in manual mode and the state
of publication in managed mode."""

from __future__ import annotations

import html
from typing import Any

import pytest
from vpes_panel import dns_view
from vpes_panel.sessions import STAGE_IN, Session
from vpes_panel.web import ENV, Form

pytestmark = pytest.mark.unit

SESSION = Session("ns", "mail", "owner@example.org", True, "f", STAGE_IN, 0.0, 0.0, "tok")
MX = {"domain": "example.org", "type": "MX", "name": "example.org", "ttl": 300}
STATUS: dict[str, Any] = {
    "dnsRecords": [
        {**MX, "value": "10 mx.example.net", "check": "Fail", "found": ["10 old.example."],
         "fix": "Replace the MX record."},
        {**MX, "type": "TXT", "value": "v=spf1 mx -all", "check": "Fail", "found": [],
         "fix": "Add the TXT record."},
        {**MX, "type": "CNAME", "name": "autoconfig.example.org", "value": "x", "check": "Pass"},
        {**MX, "type": "TLSA", "name": "_25._tcp.example.org", "value": "3 1 1 ab"},
        {**MX, "domain": "other.example", "name": "other.example", "value": "not this one"},
    ],
    "conditions": [{"type": "DNSPublished", "status": "False", "message": "the zone refused"}],
}  # fmt: skip


def render(spec: dict[str, Any]) -> str:
    page = ENV.get_template("domain.html").render(
        title="DNS of example.org",
        session=SESSION,
        form=Form(),
        domain="example.org",
        shown="example.org",
        records=dns_view.records(STATUS, "example.org"),
        managed=dns_view.managed(spec),
        published=dns_view.condition(STATUS, "DNSPublished"),
        verified=dns_view.domain_checked(dns_view.records(STATUS, "example.org")),
        routed=dns_view.condition(STATUS, "DomainsRouted"),
        notice="",
        own=False,
    )
    return html.unescape(page)


def test_manual_mode_says_what_to_publish_and_each_verdict() -> None:
    page = render({"dns": {"mode": "Manual"}})
    assert "What to publish" in page and "Publication" not in page
    for words in ("Published, but wrong", "Missing: not published yet", "Published and right",
                  "Not checked yet"):  # fmt: skip
        assert page.count(words) == 1, words
    assert "10 old.example." in page and "Replace the MX record." in page
    assert "Add the TXT record." in page
    assert "not this one" not in page, "another domain's records stay on its own page"
    assert 'action="/domains/example.org/check"' in page and 'value="tok"' in page


def test_managed_mode_shows_the_state_of_publication() -> None:
    page = render({})
    assert "What to publish" not in page
    assert "publishes these records for you" in page and "the zone refused" in page
    assert "10 mx.example.net" in page, "the records are still listed"


def test_a_domain_page_judges_its_own_records_only() -> None:
    page = render({"dns": {"mode": "Manual"}})
    assert "2 of 4 records are missing or wrong" in page
    rows = dns_view.records(STATUS, "other.example")
    assert dns_view.domain_checked(rows).state == "unknown", "its one record is unchecked"
    passed = [r for r in dns_view.records(STATUS, "example.org") if r.verdict == "published"]
    good = dns_view.domain_checked(passed)
    assert (good.state, good.message) == ("good", "Each of its 1 records is published and right.")
    assert dns_view.domain_checked([]).words == "Not known yet"
