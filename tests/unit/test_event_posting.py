"""How the operator posts its events: at once through its own client, from a handler or
a background loop alike; a refusal is logged and dropped, never raised or retried."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any, cast

import pytest
from vpes_operator.clients.kube import ApiError, Kube
from vpes_operator.conditions import Event
from vpes_operator.handlers import events

pytestmark = pytest.mark.unit

SERVER = {
    "apiVersion": "vpes.io/v1alpha1",
    "kind": "PersonalMailServer",
    "metadata": {"name": "alice", "namespace": "t-alice", "uid": "u-1"},
}


class Recorder:
    """A client that keeps what it was asked to create, or refuses it."""

    def __init__(self, refuse: ApiError | None = None) -> None:
        self.created: list[dict[str, Any]] = []
        self.refuse = refuse

    def create(self, obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self.created.append(obj)
        if self.refuse is not None:
            raise self.refuse
        return obj


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    before = events._CLIENT.kube
    rec = Recorder()
    events.use(cast(Kube, rec))
    yield rec
    events._CLIENT.kube = before


def refusal(status: int, message: str) -> ApiError:
    body = json.dumps({"reason": "Forbidden", "message": message})
    return ApiError(status, body, "POST", "/api/v1/namespaces/t-alice/events")


def test_every_event_is_created_at_once_in_order(recorder: Recorder) -> None:
    told = [
        Event("Normal", "Applied", "Provisioned=True: all objects of the server are applied"),
        Event("Normal", "PodReady", "Ready=True: the server answers"),
    ]
    events.post(SERVER, told)
    assert [(e["reason"], e["type"]) for e in recorder.created] == [
        ("Applied", "Normal"),
        ("PodReady", "Normal"),
    ]
    first = recorder.created[0]
    assert first["metadata"]["namespace"] == "t-alice"
    assert first["involvedObject"]["uid"] == "u-1"
    assert first["message"].startswith("Provisioned=True")


def test_a_long_message_is_cut_to_what_the_api_server_takes(recorder: Recorder) -> None:
    events.post(SERVER, [Event("Warning", "ApplyRejected", "x" * 5000)])
    message = recorder.created[0]["message"]
    assert len(message) == events.MAX_MESSAGE and message.endswith("...")


def test_a_namespace_being_deleted_drops_the_event_quietly(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    recorder.refuse = refusal(
        403,
        'events "vpes-event-" is forbidden: unable to create new content in namespace '
        "t-alice because it is being terminated",
    )
    with caplog.at_level(logging.DEBUG, logger=events.__name__):
        events.post(SERVER, [Event("Normal", "Applied", "a"), Event("Normal", "PodReady", "b")])
    assert len(recorder.created) == 2  # each tried once, none retried, nothing raised
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]


def test_another_refusal_is_a_warning_in_the_log(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    recorder.refuse = refusal(403, 'events is forbidden: User "vpes" cannot create events')
    with caplog.at_level(logging.DEBUG, logger=events.__name__):
        events.post(SERVER, [Event("Warning", "PlanNotFound", "create it")])
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "PlanNotFound" in caplog.records[0].getMessage()


def test_inside_a_handler_the_event_skips_kopfs_queue(recorder: Recorder) -> None:
    # The context kopf gives a handler (its private posting variables): kopf.event()
    # would queue the event there, behind any refused one being retried for a minute.
    import asyncio

    import kopf
    from kopf._core.engines import posting

    loop = asyncio.new_event_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    tokens = [
        posting.settings_var.set(kopf.OperatorSettings()),
        posting.event_queue_var.set(queue),
        posting.event_queue_loop_var.set(loop),
    ]
    try:
        events.post(SERVER, [Event("Normal", "Applied", "Provisioned=True: applied")])
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        for var, token in zip(
            (posting.settings_var, posting.event_queue_var, posting.event_queue_loop_var),
            tokens,
            strict=True,
        ):
            var.reset(token)  # type: ignore[attr-defined]
        loop.close()
    assert queue.empty()
    assert [e["reason"] for e in recorder.created] == ["Applied"]
