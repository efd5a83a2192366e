"""The one way the operator posts Kubernetes events (on transitions, never repeats).

Every event is created at once through the product's client, from a handler
and from the background loops (usage, edge maps, sweeps) alike, never through
kopf's queue: kopf posts its queue one event at a time and retries a refused
one up to nine times with back-off, so the events about servers whose namespace
is being deleted (refused, 403) held up every other server's events behind them
for minutes. An event that cannot be posted is logged and dropped: it is never
worth failing or delaying the work that caused it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from ..clients.kube import ApiError, Kube
from ..conditions import Event

log = logging.getLogger(__name__)

# The API server refuses an event whose message is longer than this.
MAX_MESSAGE = 1024
COMPONENT = "vpes-operator"


class _Client:
    kube: Kube | None = None


_CLIENT = _Client()


def use(kube: Kube) -> None:
    """The client that posts every event (set at start-up)."""
    _CLIENT.kube = kube


def post(body: Any, events: Iterable[Event]) -> None:
    for e in events:
        message = e.message
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        _create(body, e.type, e.reason, message)


def event_body(
    body: Any, type_: str, reason: str, message: str, now: dt.datetime
) -> dict[str, Any]:
    """A core/v1 Event about `body` (what kopf would post)."""
    meta = body["metadata"]
    # A cluster-scoped object's events go to the default namespace (as kopf posts them).
    namespace = meta.get("namespace") or "default"
    stamp = now.isoformat().replace("+00:00", "Z")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "vpes-event-", "namespace": namespace},
        "involvedObject": {
            "apiVersion": body["apiVersion"],
            "kind": body["kind"],
            "name": meta["name"],
            **({"namespace": meta["namespace"]} if meta.get("namespace") else {}),
            "uid": meta["uid"],
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def _create(body: Any, type_: str, reason: str, message: str) -> None:
    kube = _CLIENT.kube
    if kube is None:
        log.warning("event %s not posted (no client yet): %s", reason, message)
        return
    try:
        kube.create(event_body(body, type_, reason, message, dt.datetime.now(dt.UTC)))
    except ApiError as e:
        if _namespace_gone(e):  # nobody can read it there any more
            log.debug("event %s not posted: %s", reason, e)
        else:
            log.warning("event %s not posted: %s", reason, e)


def _namespace_gone(e: ApiError) -> bool:
    """The refusal of an event in a namespace being deleted, or already gone."""
    return (e.status == 403 and "being terminated" in e.message) or (
        e.status == 404 and "namespaces" in e.message
    )
