"""The index of hosted domains, fed by (fake) informers: the domains, the server that
has each, rebuilt only when something it reads changed, never a list per request, the
last good index kept while a watch fails; and its settings."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from vpes_operator.clients.kube import JSON, ApiError
from vpes_panel.wellknown.hosted import (
    HostedDomains,
    HostedUnavailableError,
    Hosting,
    collection_path,
    slim_server,
    watch_hosted,
)
from vpes_panel.wellknown.settings import WebSettings

from .hosted_support import indexed

pytestmark = pytest.mark.unit


def server(name: str, ns: str, created: str, plan: str, *domains: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": ns, "creationTimestamp": created, "resourceVersion": "1"}
    return {"metadata": meta, "spec": {"domains": list(domains), "plan": plan}}


def plan(name: str, calendar: bool | None) -> dict[str, Any]:
    features = {} if calendar is None else {"calendar": calendar}
    return {"metadata": {"name": name}, "spec": {"features": features}}


ONE = server("mail", "a", "2026-01-01T00:00:00Z", "big", "one.example", "two.example")


def test_domains_of_every_server_normalised() -> None:
    odd = server("x", "b", "2026-01-02T00:00:00Z", "big", "Three.Example", "four.example.")
    hosted = indexed([ONE, odd])
    assert hosted.domains() == {"one.example", "two.example", "three.example", "four.example"}
    assert "three.example" in hosted and "five.example" not in hosted


def test_each_domain_is_the_oldest_claimants_with_its_plans_calendar() -> None:
    servers = [
        server("late", "b", "2026-02-01T00:00:00Z", "small", "one.example", "two.example"),
        server("mail", "a", "2026-01-01T00:00:00Z", "big", "one.example"),
        server("odd", "c", "2026-03-01T00:00:00Z", "unknown", "three.example"),
    ]
    plans = [plan("big", True), plan("small", False), plan("plain", None)]
    hosted = indexed(servers, plans)
    assert hosted.hosting("one.example") == Hosting("a", "mail", "big", True)
    assert hosted.hosting("two.example") == Hosting("b", "late", "small", False)
    assert hosted.hosting("three.example") == Hosting("c", "odd", "unknown", False)
    assert hosted.hosting("four.example") is None


def test_unavailable_until_both_servers_and_plans_are_listed() -> None:
    hosted = HostedDomains()
    hosted.servers.replace([ONE])
    assert not hosted.refresh()
    with pytest.raises(HostedUnavailableError):
        hosted.domains()
    hosted.plans.replace([])  # no plan at all is a list too
    assert hosted.refresh() and hosted.ready.is_set()
    assert "one.example" in hosted


def test_a_domain_added_removed_or_its_server_deleted_is_served_after_the_rebuild() -> None:
    hosted = indexed([ONE])
    added = server("new", "b", "2026-01-05T00:00:00Z", "big", "new.example")
    hosted.servers.event("ADDED", added)
    assert "new.example" not in hosted  # a read never rebuilds: the last index, at once
    assert hosted.refresh()
    assert hosted.hosting("new.example") == Hosting("b", "new", "big", False)
    hosted.servers.event("MODIFIED", server("new", "b", "2026-01-05T00:00:00Z", "big", "n.example"))
    assert hosted.refresh()
    assert "new.example" not in hosted and "n.example" in hosted
    hosted.servers.event("DELETED", added)
    assert hosted.refresh()
    assert hosted.domains() == {"one.example", "two.example"}
    # A server being deleted routes nothing.
    going = json.loads(json.dumps(ONE))
    going["metadata"]["deletionTimestamp"] = "2026-02-01T00:00:00Z"
    hosted.servers.event("MODIFIED", going)
    assert hosted.refresh() and hosted.hosting("one.example") is None


def test_what_the_index_does_not_read_changes_nothing() -> None:
    hosted = indexed([ONE])
    busy = json.loads(json.dumps(ONE))
    busy["metadata"]["resourceVersion"] = "99"
    busy["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    busy["spec"]["mailboxes"] = [{"address": "a@one.example", "quota": "1Gi"}]
    hosted.servers.event("MODIFIED", busy)
    hosted.servers.event("DELETED", server("never-seen", "z", "", "big"))
    hosted.servers.replace([busy])  # a relist that finds the same
    assert not hosted.refresh() and hosted.builds == 1
    keyed = json.loads(json.dumps(busy))
    keyed["spec"]["mailboxes"][0]["openpgpKey"] = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
    hosted.servers.event("MODIFIED", keyed)
    assert hosted.refresh() and hosted.builds == 2


def test_the_servers_keep_only_what_the_index_reads() -> None:
    full = json.loads(json.dumps(ONE))
    full["status"] = {"phase": "Running"}
    full["metadata"].update(uid="u", managedFields=[{"manager": "kopf"}])
    full["spec"]["mailboxes"] = [
        {"address": "a@one.example", "quota": "1Gi", "openpgpKey": "KEY"},
        {"address": "b@one.example", "aliases": ["c@one.example"]},
    ]
    assert slim_server(full) == {
        "metadata": {"name": "mail", "namespace": "a", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "domains": ["one.example", "two.example"],
            "plan": "big",
            "mailboxes": [{"address": "a@one.example", "openpgpKey": "KEY"}],
        },
    }


def test_a_plans_calendar_follows_its_events() -> None:
    hosted = indexed([ONE], [plan("big", True)])
    assert hosted.hosting("one.example") == Hosting("a", "mail", "big", True)
    hosted.plans.event("MODIFIED", plan("big", False))
    assert hosted.refresh()
    assert hosted.hosting("one.example") == Hosting("a", "mail", "big", False)
    hosted.plans.event("ADDED", plan("big", True))
    hosted.plans.event("DELETED", plan("big", True))
    assert hosted.refresh()
    assert hosted.hosting("one.example") == Hosting("a", "mail", "big", False)


def wait_for(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.005)


def test_the_rebuild_thread_settles_a_burst_of_events_into_few_builds() -> None:
    hosted, stop = indexed([ONE]), threading.Event()
    thread = threading.Thread(target=hosted.run, args=(stop, 0.2))
    thread.start()
    try:
        for i in range(50):
            hosted.servers.event(
                "ADDED", server(f"s{i}", "b", "2026-01-05T00:00:00Z", "big", f"d{i}.example")
            )
        wait_for(lambda: "d49.example" in hosted)
        assert hosted.domains() >= {f"d{i}.example" for i in range(50)}
        assert hosted.builds <= 3  # the first, and one or two for the burst
    finally:
        stop.set()
        thread.join(timeout=5)


class Fleet:
    """A fake API server for both informers: a list of the servers (or a failure), and
    watches that hand out the events queued, then end."""

    def __init__(self) -> None:
        self.servers = [ONE]
        self.lists: list[str] = []
        self.events: list[Any] = []
        self.fail_list = False
        self.lock = threading.Lock()

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None) -> JSON:
        with self.lock:
            self.lists.append(path)
            if self.fail_list:
                raise ApiError(503, "unavailable", "GET", path)
            items = self.servers if path == collection_path("PersonalMailServer") else []
            return {"items": list(items), "metadata": {"resourceVersion": "1"}}

    def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 300, fields: str = ""
    ) -> Iterator[tuple[str, JSON]]:
        time.sleep(0.01)
        if path != collection_path("PersonalMailServer"):
            return
        with self.lock:
            queued, self.events = self.events, []
        for item in queued:
            if isinstance(item, Exception):
                raise item
            yield item


def test_informed_index_serves_events_and_keeps_the_last_good_one_while_the_watch_fails() -> None:
    fleet, stop = Fleet(), threading.Event()
    hosted = watch_hosted(fleet, stop, 0.0, backoff=(0.05, 0.1))  # type: ignore[arg-type]
    try:
        assert hosted.ready.wait(5)
        assert "one.example" in hosted
        lists = len(fleet.lists)
        assert lists == 2  # the servers once, the plans once
        fleet.events.append(("ADDED", server("b", "b", "2026-01-05T00:00:00Z", "big", "b.example")))
        wait_for(lambda: "b.example" in hosted)
        for _ in range(100):
            assert "nobody.example" not in hosted
        assert len(fleet.lists) == lists  # no list per request, none for an event
        # The watch breaks and the API server refuses lists for a while: the last index stays.
        fleet.fail_list = True
        fleet.events.append(ConnectionResetError("stream cut"))
        wait_for(lambda: len(fleet.lists) > lists + 1)
        assert hosted.domains() == {"one.example", "two.example", "b.example"}
        # Back: the relist finds the fleet as it is now (b gone meanwhile, c added).
        fleet.servers = [ONE, server("c", "c", "2026-01-06T00:00:00Z", "big", "c.example")]
        fleet.fail_list = False
        wait_for(lambda: "c.example" in hosted and "b.example" not in hosted)
    finally:
        stop.set()


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPES_WEB_HOSTED_SETTLE_SECONDS", "5")
    monkeypatch.setenv("VPES_WEB_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("VPES_IMAP_HOST", "imap.provider.example")
    monkeypatch.setenv("VPES_MTA_STS_MODE", "enforce")
    settings = WebSettings.from_env()
    assert settings.hosted_settle_seconds == 5.0
    assert settings.max_body_bytes == 4096
    assert settings.mail.imap_host == "imap.provider.example"
    assert settings.mail.mta_sts_mode == "enforce"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        (
            "VPES_WEB_HOSTED_SETTLE_SECONDS",
            "soon",
            "VPES_WEB_HOSTED_SETTLE_SECONDS must be zero or more",
        ),
        ("VPES_WEB_MAX_BODY_BYTES", "100", "VPES_WEB_MAX_BODY_BYTES must be 1024 or more"),
    ],
)
def test_bad_settings_say_which_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=says):
        WebSettings.from_env()
