"""The informer (list, then watch): what it hands its handler, when it lists again
(watch ended with resync, 410 Gone, failures with a growing back-off) and when it only
resumes the watch."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from vpes_operator.clients.informer import Informer, next_delay
from vpes_operator.clients.kube import JSON, ApiError

pytestmark = pytest.mark.unit


def obj(name: str, version: str) -> JSON:
    return {"metadata": {"name": name, "resourceVersion": version}}


def gone() -> ApiError:
    return ApiError(410, json.dumps({"reason": "Expired", "message": "too old"}), "WATCH", "/x")


class Script:
    """A fake API: each list and each watch is the next step of its script (a value, or
    an exception to raise); when the lists run out, the informer is stopped."""

    def __init__(self, lists: list[Any], watches: list[Any], stop: threading.Event) -> None:
        self.lists, self.watches, self.stop = lists, watches, stop
        self.calls: list[tuple[str, str]] = []
        self.queries: list[dict[str, str] | None] = []

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None) -> JSON:
        self.calls.append(("list", path))
        self.queries.append(query)
        if not self.lists:
            self.stop.set()
            return {"items": [], "metadata": {"resourceVersion": "0"}}
        step = self.lists.pop(0)
        if isinstance(step, Exception):
            raise step
        return {"items": step[1], "metadata": {"resourceVersion": step[0]}}

    def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 300, fields: str = ""
    ) -> Iterator[tuple[str, JSON]]:
        self.calls.append(("watch", resource_version))
        if not self.watches:
            self.stop.set()
            return
        step = self.watches.pop(0)
        for item in step:
            if isinstance(item, Exception):
                raise item
            yield item


class Recorder:
    def __init__(self, fail_on: str = "") -> None:
        self.seen: list[Any] = []
        self.fail_on = fail_on

    def replace(self, items: list[JSON]) -> None:
        self.seen.append(("list", [i["metadata"]["name"] for i in items]))

    def event(self, kind: str, o: JSON) -> None:
        if kind == self.fail_on:
            raise ValueError("the handler's own bug")
        self.seen.append((kind, o["metadata"]["name"]))


def run(
    lists: list[Any], watches: list[Any], resync: bool, fail_on: str = ""
) -> tuple[Script, Recorder, Informer]:
    stop = threading.Event()
    script, recorder = Script(lists, watches, stop), Recorder(fail_on)
    informer = Informer(script, "/x", recorder, stop, resync=resync, backoff=(0.01, 0.04))  # type: ignore[arg-type]
    informer.start()
    informer.join(timeout=10)
    assert not informer.is_alive()
    return script, recorder, informer


def test_the_list_then_each_event_bookmarks_left_out() -> None:
    events = [("ADDED", obj("b", "2")), ("BOOKMARK", obj("", "3")), ("DELETED", obj("a", "4"))]
    _, recorder, informer = run([("1", [obj("a", "1")])], [events], resync=False)
    assert recorder.seen[:3] == [("list", ["a"]), ("ADDED", "b"), ("DELETED", "a")]
    assert informer.synced.is_set()


def test_without_resync_an_ended_watch_resumes_from_the_last_version_seen() -> None:
    first = [("ADDED", obj("b", "2")), ("BOOKMARK", obj("", "7"))]
    second = [("MODIFIED", obj("b", "8"))]
    script, recorder, informer = run([("1", [])], [first, second], resync=False)
    assert script.calls[:4] == [("list", "/x"), ("watch", "1"), ("watch", "7"), ("watch", "8")]
    assert informer.lists == 1  # the first list only (the stop came from the watch)
    assert recorder.seen == [("list", []), ("ADDED", "b"), ("MODIFIED", "b")]


def test_with_resync_an_ended_watch_lists_again() -> None:
    script, recorder, _ = run([("1", [obj("a", "1")]), ("5", [])], [[], []], resync=True)
    assert script.calls[:4] == [("list", "/x"), ("watch", "1"), ("list", "/x"), ("watch", "5")]
    assert recorder.seen[:2] == [("list", ["a"]), ("list", [])]


def test_410_gone_lists_again_at_once_and_the_list_replaces_what_was_known() -> None:
    expired = [("ADDED", obj("b", "2")), gone()]
    script, recorder, _ = run(
        [("1", [obj("a", "1")]), ("9", [obj("c", "9")])], [expired, []], resync=False
    )
    assert script.calls[:4] == [("list", "/x"), ("watch", "1"), ("list", "/x"), ("watch", "9")]
    assert recorder.seen[:3] == [("list", ["a"]), ("ADDED", "b"), ("list", ["c"])]


def test_failures_list_again_after_a_growing_back_off() -> None:
    refused = ApiError(503, "unavailable", "GET", "/x")
    broken = [("ADDED", obj("b", "2")), ConnectionResetError("stream cut")]
    lists = [refused, OSError("connection refused"), ("1", []), ("3", [obj("b", "3")])]
    script, recorder, informer = run(lists, [broken, []], resync=False)
    assert [c[0] for c in script.calls[:6]] == ["list", "list", "list", "watch", "list", "watch"]
    assert script.queries[0] is None  # one list, not in pages
    assert recorder.seen[:3] == [("list", []), ("ADDED", "b"), ("list", ["b"])]
    assert informer.synced.is_set()


def test_the_back_off_doubles_up_to_its_bound_from_its_first_step() -> None:
    delays, delay = [], 0.0
    for _ in range(8):
        delay = next_delay(delay, (0.5, 30.0))
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_handler_that_fails_on_one_event_gets_the_next() -> None:
    events = [("MODIFIED", obj("a", "2")), ("ADDED", obj("b", "3"))]
    _, recorder, _ = run([("1", [obj("a", "1")])], [events], resync=False, fail_on="MODIFIED")
    assert recorder.seen == [("list", ["a"]), ("ADDED", "b")]


class Pages:
    """A fake API that serves a list of five objects in pages of two."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.queries: list[dict[str, str] | None] = []

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None) -> JSON:
        self.queries.append(query)
        start = int((query or {}).get("continue", "0"))
        items = [obj(f"o{i}", "5") | {"status": {"big": "x" * 100}} for i in range(5)]
        more = {"continue": str(start + 2)} if start + 2 < 5 else {}
        return {"items": items[start : start + 2], "metadata": {"resourceVersion": "5", **more}}

    def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 300, fields: str = ""
    ) -> Iterator[tuple[str, JSON]]:
        yield "ADDED", obj("late", "6") | {"status": {"big": "y"}}
        self.stop.set()


def test_a_paged_list_reaches_the_handler_whole_each_object_transformed() -> None:
    stop = threading.Event()
    pages, seen = Pages(stop), []

    class Keep:
        def replace(self, items: list[JSON]) -> None:
            seen.append(items)

        def event(self, kind: str, o: JSON) -> None:
            seen.append((kind, o))

    def slim(o: JSON) -> JSON:
        return {"metadata": {"name": o["metadata"]["name"]}}

    informer = Informer(pages, "/x", Keep(), stop, resync=False, page_size=2, transform=slim)
    informer.start()
    informer.join(timeout=10)
    assert pages.queries == [
        {"limit": "2"},
        {"limit": "2", "continue": "2"},
        {"limit": "2", "continue": "4"},
    ]
    assert seen[0] == [{"metadata": {"name": f"o{i}"}} for i in range(5)]
    assert seen[1] == ("ADDED", {"metadata": {"name": "late"}})
    assert informer.lists == 1
