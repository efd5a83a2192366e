"""CalDAV/CardDAV discovery records (RFC 6764) for the domains of calendar plans; a plan
change is re-checked at once (its records come or go); whether a plan's
spec sells calendar."""

from __future__ import annotations

from typing import Any

import pytest
from vpes_operator.dns import records, service
from vpes_operator.dns.schedule import Schedule
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings(edge_web_host="dav.edge.example.", imap_host="imap.edge.example")
DAV = {records.SRV_CALDAVS, records.SRV_CARDDAVS}


def srv(recs: list[records.Record]) -> dict[str, str]:
    return {r.name: r.value for r in recs if r.type == "SRV"}


def test_no_dav_records_without_calendar() -> None:
    for recs in (
        records.domain_records("example.org", SETTINGS, {}),
        records.domain_records("example.org", SETTINGS, {}, calendar=False),
        records.server_records(["example.org", "example.net"], SETTINGS, {}),
    ):
        assert not [r for r in recs if r.kind in DAV]
        assert not [name for name in srv(recs) if "dav" in name]


def test_calendar_adds_caldavs_and_carddavs_pointing_at_the_edge_web_host() -> None:
    without = records.domain_records("example.org", SETTINGS, {})
    with_ = records.domain_records("example.org", SETTINGS, {}, calendar=True)
    added = [r for r in with_ if r not in without]
    assert [(r.kind, r.type, r.name, r.value, r.ttl) for r in added] == [
        (
            records.SRV_CALDAVS,
            "SRV",
            "_caldavs._tcp.example.org",
            "0 1 443 dav.edge.example.",
            3600,
        ),
        (
            records.SRV_CARDDAVS,
            "SRV",
            "_carddavs._tcp.example.org",
            "0 1 443 dav.edge.example.",
            3600,
        ),
    ]
    # Nothing else changes, and the mail clients' SRV records are as they were.
    assert [r for r in with_ if r.kind not in DAV] == without
    assert "CalDAV" in added[0].model().purpose and "RFC 6764" in added[0].model().purpose
    assert "CardDAV" in added[1].model().purpose
    assert not any(r.shared for r in added)  # published per server, under the domain


def test_every_domain_of_a_calendar_server_announces_dav() -> None:
    recs = records.server_records(["b.example", "a.example"], SETTINGS, {}, calendar=True)
    assert {n: v for n, v in srv(recs).items() if "dav" in n} == {
        f"_{s}._tcp.{d}": "0 1 443 dav.edge.example."
        for d in ("a.example", "b.example")
        for s in ("caldavs", "carddavs")
    }


def test_the_mail_client_services_stay_the_mail_ones() -> None:
    # The set-up endpoints (autoconfig, autodiscover, the Apple profile) iterate these:
    # they hold no DAV service.
    assert {s.protocol for s in records.client_services(SETTINGS)} == {"imap", "pop3", "smtp"}
    assert [(s.service, s.host, s.port) for s in records.dav_services(SETTINGS)] == [
        ("caldavs", "dav.edge.example", 443),
        ("carddavs", "dav.edge.example", 443),
    ]


# -- a plan change is checked at once -------------------------------------------------


def test_a_new_plan_revision_makes_the_check_due_at_once() -> None:
    schedule, settings = Schedule(), OperatorSettings()
    schedule.done("u", 1, True, settings, 0.0, plan="3-abc")
    assert not schedule.is_due("u", 1, 10.0, plan="3-abc")
    assert schedule.is_due("u", 1, 10.0, plan="4-abc")
    assert schedule.is_due("u", 1, 10.0, plan=None)
    # Acted on: not due again for the same revision until the interval is up.
    schedule.done("u", 1, True, settings, 10.0, plan="4-abc")
    assert not schedule.is_due("u", 1, 20.0, plan="4-abc")
    assert schedule.is_due("u", 1, 10.0 + settings.dns_verify_ok_interval, plan="4-abc")


def test_a_failing_check_after_a_plan_change_starts_from_the_short_interval() -> None:
    schedule, settings = Schedule(), OperatorSettings()
    schedule.done("u", 1, False, settings, 0.0, plan="1-a")
    longer = schedule.done("u", 1, False, settings, 1.0, plan="1-a")
    assert longer == 2 * settings.dns_verify_min_interval
    assert schedule.done("u", 1, False, settings, 2.0, plan="2-a") == (
        settings.dns_verify_min_interval
    )


# -- the plan's calendar, as the DNS handler reads it ----------------------------------


@pytest.mark.parametrize(
    ("plan", "calendar"),
    [
        ({"features": {"calendar": True}}, True),
        ({"features": {"calendar": False}}, False),
        ({}, False),
        ({"features": {"calendar": "sometimes"}}, False),  # invalid: the reconcile says so
        (None, False),  # no such plan
    ],
)
def test_the_plan_says_whether_the_domains_announce_dav(
    plan: dict[str, Any] | None, calendar: bool
) -> None:
    assert service.sells_calendar(plan) is calendar
