"""Readiness and liveness verdicts from the operator's progress (no servers)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from vpes_operator import health
from vpes_operator.clients import inventory
from vpes_operator.health import Health
from vpes_operator.models.common import ObjectMeta
from vpes_operator.naming import FINALIZER
from vpes_operator.watched import Watched

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def h(clock: Clock) -> Health:
    return Health(stall_after=60, clock=clock)


def servers(n: int, generation: int = 1) -> list[tuple[str, int]]:
    return [(f"uid-{i}", generation) for i in range(n)]


def test_not_ready_before_kopf_starts(h: Health) -> None:
    v = h.assess([])
    assert not v.ready and v.alive


def test_ready_at_once_when_there_was_nothing_to_index(h: Health) -> None:
    h.started(expected_servers=0)
    assert h.assess([]).ready


def test_not_ready_until_a_handler_ran_and_the_watch_delivered_all(h: Health) -> None:
    h.started(expected_servers=100)
    v = h.assess(servers(100), undelivered=36)
    assert not v.ready and v.alive
    assert "no handler has finished" in v.why
    h.handled("uid-0", 1)
    v = h.assess(servers(100), undelivered=36)
    assert not v.ready and "not delivered 36 of the 100" in v.why
    assert h.assess(servers(100)).ready
    # Once ready, a watch lagging behind a new listing does not take it back.
    assert h.assess(servers(100), undelivered=5).ready


def test_the_start_up_deadlock_fails_liveness(h: Health, clock: Clock) -> None:
    """Work seen, no handler ever finishes: alive until the limit, then not."""
    h.started(expected_servers=100)
    h.assess(servers(100))
    clock.now += 59
    assert h.assess(servers(100)).alive
    clock.now += 2
    v = h.assess(servers(100))
    assert not v.alive and not v.ready
    assert "stalled: 100 servers" in v.why


def test_slow_but_progressing_work_is_alive(h: Health, clock: Clock) -> None:
    h.started(expected_servers=1000)
    for i in range(1000):
        clock.now += 1  # one handler a second: the backlog waits long, yet progresses
        h.handled(f"uid-{i}", 1)
        v = h.assess(servers(1000))
        assert v.alive, (i, v.why)
    assert v.ready and "0 servers waiting" in v.why


def test_idle_operator_with_everything_handled_stays_alive(h: Health, clock: Clock) -> None:
    h.started(expected_servers=3)
    for uid, gen in servers(3):
        h.handled(uid, gen)
    clock.now += 3600
    v = h.assess(servers(3))
    assert v.ready and v.alive


def test_a_spec_change_nobody_takes_is_a_stall(h: Health, clock: Clock) -> None:
    h.started(expected_servers=2)
    for uid, gen in servers(2):
        h.handled(uid, gen)
    h.assess(servers(2))
    clock.now += 600  # idle for long: not a stall by itself
    changed = [("uid-0", 2), ("uid-1", 1)]
    assert h.assess(changed).alive
    clock.now += 61
    assert not h.assess(changed).alive
    h.handled("uid-0", 2)
    assert h.assess(changed).alive


def test_deleted_servers_stop_waiting(h: Health, clock: Clock) -> None:
    h.started(expected_servers=1)
    h.assess(servers(1))
    clock.now += 120
    assert h.assess([]).alive
    assert h.handled_generation("uid-0") is None


def test_an_older_generation_never_replaces_a_newer_one(h: Health) -> None:
    h.handled("u", 5)
    h.handled("u", 3)
    assert h.handled_generation("u") == 5


def test_tracks_marks_progress_even_when_the_handler_fails() -> None:
    calls: list[Any] = []

    @health.tracks
    def failing(body: dict[str, Any], **_: Any) -> None:
        calls.append(body)
        raise RuntimeError("boom")

    body = {"metadata": {"uid": "tracked-1", "generation": 7}}
    with pytest.raises(RuntimeError):
        failing(body=body)
    assert calls and health.HEALTH.handled_generation("tracked-1") == 7
    assert failing.__name__ == "failing"  # kopf's handler id and progress keys stay


def test_assess_forever_merges_the_api_view_with_the_watch(clock: Clock) -> None:
    """A server the watch never delivered still counts as waiting work."""
    h = Health(stall_after=0.05)
    h.started(expected_servers=2)
    index: Watched[int] = Watched()
    index.put("uid-0", "uid-0", 1)
    listed = [("uid-0", 1), ("uid-1", 1)]

    async def run() -> None:
        task = asyncio.create_task(
            health.assess_forever(h, index, lambda: listed, every=0.01, list_every=0.01)
        )
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(run())
    v = h.verdict()
    assert not v.alive and "2 servers" in v.why


@pytest.mark.parametrize(
    ("meta", "work"),
    [
        ({}, True),
        ({"finalizers": ["example.net/hold"]}, True),
        ({"deletionTimestamp": "2026-12-04T00:00:00Z", "finalizers": [FINALIZER]}, True),
        ({"deletionTimestamp": "2026-12-04T00:00:00Z", "finalizers": ["example.net/hold"]}, False),
        ({"deletionTimestamp": "2026-12-04T00:00:00Z"}, False),
    ],
)
def test_a_server_is_work_unless_deleted_without_our_finalizer(
    meta: dict[str, Any], work: bool
) -> None:
    assert inventory.awaits_handler(ObjectMeta.model_validate(meta)) is work


def test_every_change_handler_of_servers_is_tracked() -> None:
    """A server whose only pending handler is untracked (say, a DNS cleanup retrying
    with back-off after its other delete handler finished) would count as stalled."""
    import kopf
    from vpes_operator import handlers  # noqa: F401  (registers the handlers)

    registry = kopf.get_default_registry()
    found = [
        h
        for h in registry._changing.get_all_handlers()
        if h.selector is not None and h.selector.any_name == "personalmailservers"
    ]
    assert len(found) >= 3
    untracked = [h.id for h in found if not getattr(h.fn, "tracked", False)]
    assert not untracked, f"change handlers of servers not tracked by health: {untracked}"


def test_watched_keeps_each_object_in_one_group() -> None:
    store: Watched[str] = Watched()
    store.put("a", "gold", "a1")
    store.put("b", "gold", "b1")
    store.put("a", "silver", "a2")  # moved to another plan
    assert sorted(store.get("gold")) == ["b1"] and store.get("silver") == ["a2"]
    store.drop("b")
    assert store.get("gold") == [] and dict(store.items()) == {"silver": ["a2"]}
    assert store.first("silver") == "a2" and store.first("gold") is None
