"""Outbound holds and releases: the relay's /status parsed, who is held (and who not:
a count from before a release), the release by annotation, Deliverable's messages, and
an unreachable relay (holds stay, one event, no flapping)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from vpes_operator import metrics, outbound
from vpes_operator.conditions import find
from vpes_operator.models.conditions import ConditionType, Reason
from vpes_operator.models.server import PersonalMailServer, PersonalMailServerStatus
from vpes_operator.outbound import OutboundPoll, RelayStatusError, Seen
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def server(
    name: str = "alice", outbound_: dict[str, Any] | None = None, release: str | None = None
) -> PersonalMailServer:
    meta: dict[str, Any] = {"name": name, "namespace": "shop", "uid": f"uid-{name}"}
    if release is not None:
        meta["annotations"] = {"vpes.io/release-outbound": release}
    body: dict[str, Any] = {"metadata": meta, "spec": {"plan": "p"}}
    if outbound_ is not None:
        body["status"] = {"outbound": outbound_}
    return PersonalMailServer.model_validate(body)


def test_parse_status() -> None:
    doc = {
        "maps_version": "v",
        "window_seconds": 3600,
        "servers": {
            "shop/alice": {"recipients": 12, "limit": 10, "token": "-", "over_limit": True},
            "shop/bob": {"recipients": "x"},  # nonsense: skipped
            "nobody": {},
        },
    }
    assert outbound.parse_status(doc) == {"shop/alice": Seen(12, 10, "-", True)}
    doc["servers"] = {
        "shop/carol": {
            "recipients": 1, "limit": 10, "token": "-", "over_limit": False, "deferred": 0,
            "spam": 5, "spam_hold": True,
        }
    }  # fmt: skip
    assert outbound.parse_status(doc) == {"shop/carol": Seen(1, 10, "-", False, 5, True)}
    with pytest.raises(RelayStatusError):
        outbound.parse_status({"servers": []})


def test_hold_writes_outbound_and_deliverable_false_with_the_command() -> None:
    new = outbound.hold(server(), Seen(205, 200, "-", True), NOW)
    assert new is not None and new.outbound is not None
    assert (new.outbound.held, new.outbound.recipients, new.outbound.limit) == (True, 205, 200)
    assert new.outbound.held_since == NOW
    assert new.outbound.reason == "shop/alice reached its limit of 200 recipients an hour"
    cond = find(new.conditions, ConditionType.DELIVERABLE)
    assert cond is not None and cond.status == "False"
    assert cond.reason == Reason.OUTBOUND_LIMIT_REACHED
    assert "sent 205 recipients" in cond.message and "limit is 200" in cond.message
    assert (
        "kubectl annotate pms alice -n shop vpes.io/release-outbound=$(date +%s) --overwrite"
        in cond.message
    )


def test_no_hold_twice_nor_for_a_count_from_before_the_release() -> None:
    held = server(outbound_={"held": True})
    assert outbound.hold(held, Seen(205, 200, "-", True), NOW) is None
    released = server(outbound_={"held": False, "releasedToken": "17"})
    # The relay still counts under the old token (it has not read the new maps yet).
    assert outbound.hold(released, Seen(205, 200, "-", True), NOW) is None
    assert outbound.hold(released, Seen(205, 200, "17", True), NOW) is not None


def test_release_lifts_the_hold_once_per_token() -> None:
    held = outbound.hold(server(), Seen(205, 200, "-", True), NOW)
    assert held is not None
    current = server(release="1700000000").model_copy(update={"status": held})
    new = outbound.release(current, "1700000000", NOW)
    assert new is not None and new.outbound is not None
    assert (new.outbound.held, new.outbound.released_token) == (False, "1700000000")
    assert new.outbound.reason is None and new.outbound.held_since is None
    cond = find(new.conditions, ConditionType.DELIVERABLE)
    assert cond is not None and (cond.status, cond.reason) == ("True", Reason.RELAYING)
    done = current.model_copy(update={"status": new})
    assert outbound.release(done, "1700000000", NOW) is None
    assert outbound.to_release([done]) == []
    assert outbound.to_release([current]) == [(current, "1700000000")]


def test_a_new_server_gets_deliverable_true_once() -> None:
    s = server()
    new = outbound.with_relaying(s, s.status, NOW)
    cond = find(new.conditions, ConditionType.DELIVERABLE)
    assert cond is not None and cond.status == "True"
    held = outbound.hold(s, Seen(5, 1, "-", True), NOW)
    assert held is not None
    assert outbound.with_relaying(s, held, NOW) is held  # a hold is never undone here


class FakeKube:
    """update_status as the API does it: read, mutate, write."""

    def __init__(self, servers: list[PersonalMailServer]) -> None:
        self.objects = {s.metadata.name: s.model_dump(by_alias=True, mode="json") for s in servers}
        self.writes = 0

    def update_status(self, *args: Any) -> Any:
        name, mutate = args[3], args[4]
        obj = self.objects[name]
        new = mutate(obj)
        if new is None:
            return None
        self.writes += 1
        obj["status"] = new
        return obj


def poll_for(servers: list[PersonalMailServer], read: Any) -> tuple[OutboundPoll, list[Any]]:
    posted: list[Any] = []
    kube = FakeKube(servers)
    poll = OutboundPoll(
        kube,  # type: ignore[arg-type]
        OperatorSettings(relay_status_url="http://relay/status"),
        lambda ref, events: posted.append((ref["metadata"]["name"], events)),
        lambda: [PersonalMailServer.model_validate(o) for o in kube.objects.values()],
        read=read,
        maps_reference=lambda: {"metadata": {"name": "maps"}},
    )
    return poll, posted


def test_poll_holds_the_server_over_its_limit_once() -> None:
    seen = {"shop/alice": Seen(12, 10, "-", True), "shop/bob": Seen(3, 10, "-", False)}
    poll, posted = poll_for([server("alice"), server("bob")], lambda _url: seen)
    assert poll.poll() == 1
    assert poll.poll() == 0  # held already: nothing written again
    kube = poll.kube
    assert kube.writes == 1  # type: ignore[attr-defined]
    status = PersonalMailServerStatus.model_validate(kube.objects["alice"]["status"])  # type: ignore[attr-defined]
    assert status.outbound is not None and status.outbound.held
    assert [name for name, _ in posted] == ["alice"]  # Deliverable's transition event
    assert metrics.OUTBOUND_HELD.labels("shop", "alice", "limit")._value.get() == 1
    assert metrics.OUTBOUND_HELD.labels("shop", "bob", "none")._value.get() == 0
    assert metrics.OUTBOUND_RECIPIENTS.labels("shop", "alice")._value.get() == 12


def test_an_unreachable_relay_keeps_the_holds_and_says_so_once() -> None:
    def down(_url: str) -> dict[str, Seen]:
        raise RelayStatusError("connection refused")

    held = server("alice", outbound_={"held": True, "reason": "x"})
    poll, posted = poll_for([held], down)
    assert poll.poll() == -1
    assert poll.poll() == -1
    assert poll.kube.writes == 0  # type: ignore[attr-defined]
    assert [(n, [e.reason for e in ev]) for n, ev in posted] == [
        ("maps", [Reason.RELAY_STATUS_UNKNOWN])
    ]
    assert metrics.RELAY_STATUS_UP._value.get() == 0
    poll.read = lambda _url: {}
    assert poll.poll() == 0
    assert posted[-1][1][0].reason == Reason.RELAY_STATUS_BACK
    assert metrics.RELAY_STATUS_UP._value.get() == 1


def test_releases_follow_the_annotation() -> None:
    held = server("alice", outbound_={"held": True, "reason": "x"}, release="42")
    poll, posted = poll_for([held], lambda _url: {})
    assert poll.releases() == 1
    assert poll.releases() == 0
    reasons = [e.reason for _, events in posted for e in events]
    assert Reason.OUTBOUND_RELEASED in reasons


def test_spam_holds_with_its_own_reason_and_what_to_do() -> None:
    seen = Seen(3, 200, "-", False, spam=5, spam_hold=True)
    new = outbound.hold(server(), seen, NOW)
    assert new is not None and new.outbound is not None
    assert (new.outbound.held, new.outbound.held_for, new.outbound.spam) == (True, "Spam", 5)
    # The relay's 450 to the tenant: says it is held (the edge's metrics count "held").
    assert new.outbound.reason == (
        "outbound mail is held: shop/alice sent 5 messages in an hour that the relay's "
        "antispam refused as spam"
    )
    cond = find(new.conditions, ConditionType.DELIVERABLE)
    assert cond is not None and cond.status == "False"
    assert cond.reason == Reason.OUTBOUND_SPAM_SUSPECTED
    assert "refused 5 of its messages" in cond.message
    assert "Sent folders" in cond.message
    assert "kubectl annotate pms alice -n shop vpes.io/release-outbound=$(date +%s)" in (
        cond.message
    )
    # Over the limit and spam at once: spam is the one a person must look at.
    both = outbound.hold(server(), Seen(205, 200, "-", True, 5, True), NOW)
    assert both is not None and both.outbound is not None
    assert both.outbound.held_for == "Spam"
    # A count, not yet the threshold: no hold; nor a count from before a release.
    assert outbound.hold(server(), Seen(3, 200, "-", False, 4, False), NOW) is None
    released = server(outbound_={"held": False, "releasedToken": "17"})
    assert outbound.hold(released, seen, NOW) is None


def test_the_release_annotation_lifts_a_spam_hold_too() -> None:
    held = outbound.hold(server(), Seen(3, 200, "-", False, 5, True), NOW)
    assert held is not None
    current = server(release="1700000001").model_copy(update={"status": held})
    new = outbound.release(current, "1700000001", NOW)
    assert new is not None and new.outbound is not None
    assert (new.outbound.held, new.outbound.held_for) == (False, None)
    cond = find(new.conditions, ConditionType.DELIVERABLE)
    assert cond is not None and (cond.status, cond.reason) == ("True", Reason.RELAYING)


def test_poll_holds_for_spam_and_the_metric_tells_the_cause() -> None:
    seen = {
        "shop/alice": Seen(2, 10, "-", False, 6, True),
        "shop/bob": Seen(12, 10, "-", True),
        "shop/carol": Seen(1, 10, "-", False, 2, False),
    }
    poll, posted = poll_for([server("alice"), server("bob"), server("carol")], lambda _u: seen)
    assert poll.poll() == 2
    reasons = {name: [e.reason for e in events] for name, events in posted}
    assert Reason.OUTBOUND_SPAM_SUSPECTED in reasons["alice"]
    assert Reason.OUTBOUND_LIMIT_REACHED in reasons["bob"]
    assert "carol" not in reasons
    assert metrics.OUTBOUND_HELD.labels("shop", "alice", "spam")._value.get() == 1
    assert metrics.OUTBOUND_HELD.labels("shop", "bob", "limit")._value.get() == 1
    assert metrics.OUTBOUND_HELD.labels("shop", "carol", "none")._value.get() == 0
    assert metrics.OUTBOUND_SPAM.labels("shop", "alice")._value.get() == 6
    assert metrics.OUTBOUND_SPAM.labels("shop", "carol")._value.get() == 2
