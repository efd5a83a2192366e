"""The index of hosted domains: listed at most once per period whatever is asked, one
listing at a time, the last good list kept when a listing fails; and its settings."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from vpes_panel.wellknown.hosted import HostedDomains, HostedUnavailableError, Hosting
from vpes_panel.wellknown.settings import WebSettings

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Servers:
    """A fake API: the servers' domains, how often it was listed, and failures."""

    def __init__(self, *domains: list[str]) -> None:
        self.domains = list(domains)
        self.listings = 0
        self.fail = False
        self.delay = 0.0

    def __call__(self) -> list[dict[str, Any]]:
        self.listings += 1
        time.sleep(self.delay)
        if self.fail:
            raise OSError("the API server is away")
        return [{"spec": {"domains": d}} for d in self.domains]


def test_domains_of_every_server_normalised() -> None:
    servers = Servers(["One.Example", "two.example."], ["three.example"], [])
    hosted = HostedDomains(servers, 30, Clock())
    assert hosted.domains() == {"one.example", "two.example", "three.example"}
    assert "three.example" in hosted and "four.example" not in hosted


def test_listed_at_most_once_a_period_whatever_is_asked() -> None:
    servers, clock = Servers(["one.example"]), Clock()
    hosted = HostedDomains(servers, 30, clock)
    for i in range(50):
        assert f"made-up-{i}.example" not in hosted
    assert servers.listings == 1
    servers.domains = [["one.example", "new.example"]]
    clock.now += 29
    assert "new.example" not in hosted  # still the first listing
    clock.now += 2
    assert "new.example" in hosted
    assert servers.listings == 2
    # A domain removed is gone after the next listing.
    servers.domains = [["new.example"]]
    clock.now += 31
    assert "one.example" not in hosted
    assert servers.listings == 3


def test_one_listing_at_a_time_shared_by_the_requests_that_wait() -> None:
    servers = Servers(["one.example"])
    servers.delay = 0.3
    hosted = HostedDomains(servers, 0.0)  # every request would list on its own
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append("one.example" in hosted)) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * 8
    # The first listing, and at most one more for those that came while it ran.
    assert servers.listings <= 2


def test_a_failed_listing_keeps_the_last_domains_and_waits_a_period() -> None:
    servers, clock = Servers(["one.example"]), Clock()
    hosted = HostedDomains(servers, 30, clock)
    assert "one.example" in hosted
    servers.fail = True
    clock.now += 31
    assert "one.example" in hosted
    assert "one.example" in hosted
    assert servers.listings == 2  # not again at once: the API server is not hammered
    servers.fail = False
    servers.domains = [["two.example"]]
    clock.now += 31
    assert hosted.domains() == {"two.example"}


def test_unavailable_until_a_listing_succeeds() -> None:
    servers = Servers(["one.example"])
    servers.fail = True
    hosted = HostedDomains(servers, 30, Clock())
    with pytest.raises(HostedUnavailableError):
        hosted.domains()
    servers.fail = False
    # With nothing known yet, the next request tries again at once.
    assert "one.example" in hosted
    assert servers.listings == 2


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPES_WEB_HOSTED_SECONDS", "5")
    monkeypatch.setenv("VPES_WEB_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("VPES_IMAP_HOST", "imap.provider.example")
    monkeypatch.setenv("VPES_MTA_STS_MODE", "enforce")
    settings = WebSettings.from_env()
    assert settings.hosted_seconds == 5.0
    assert settings.max_body_bytes == 4096
    assert settings.mail.imap_host == "imap.provider.example"
    assert settings.mail.mta_sts_mode == "enforce"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("VPES_WEB_HOSTED_SECONDS", "soon", "VPES_WEB_HOSTED_SECONDS must be zero or more"),
        ("VPES_WEB_MAX_BODY_BYTES", "100", "VPES_WEB_MAX_BODY_BYTES must be 1024 or more"),
    ],
)
def test_bad_settings_say_which_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=says):
        WebSettings.from_env()


def server(name: str, ns: str, created: str, plan: str, *domains: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": ns, "creationTimestamp": created}
    return {"metadata": meta, "spec": {"domains": list(domains), "plan": plan}}


def plan(name: str, calendar: bool | None) -> dict[str, Any]:
    features = {} if calendar is None else {"calendar": calendar}
    return {"metadata": {"name": name}, "spec": {"features": features}}


def test_each_domain_is_the_oldest_claimants_with_its_plans_calendar() -> None:
    servers = [
        server("late", "b", "2026-02-01T00:00:00Z", "small", "one.example", "two.example"),
        server("mail", "a", "2026-01-01T00:00:00Z", "big", "one.example"),
        server("odd", "c", "2026-03-01T00:00:00Z", "unknown", "three.example"),
    ]
    plans = [plan("big", True), plan("small", False), plan("plain", None)]
    hosted = HostedDomains(lambda: servers, 30, Clock(), list_plans=lambda: plans)
    assert hosted.hosting("one.example") == Hosting("a", "mail", "big", True)
    assert hosted.hosting("two.example") == Hosting("b", "late", "small", False)
    assert hosted.hosting("three.example") == Hosting("c", "odd", "unknown", False)
    assert hosted.hosting("four.example") is None


def test_plans_are_listed_with_the_servers_and_kept_when_their_listing_fails() -> None:
    servers, clock = [server("mail", "a", "2026-01-01T00:00:00Z", "big", "one.example")], Clock()
    plans = [plan("big", True)]
    listings: list[int] = []

    def list_plans() -> list[dict[str, Any]]:
        listings.append(1)
        if not plans:
            raise OSError("forbidden")
        return plans

    hosted = HostedDomains(lambda: servers, 30, clock, list_plans=list_plans)
    for _ in range(5):
        assert hosted.hosting("one.example") == Hosting("a", "mail", "big", True)
    assert len(listings) == 1  # the same cadence as the servers'
    plans.clear()
    clock.now += 31
    assert hosted.hosting("one.example") == Hosting("a", "mail", "big", True)
    assert len(listings) == 2
    plans.append(plan("big", False))
    clock.now += 31
    assert hosted.hosting("one.example") == Hosting("a", "mail", "big", False)
