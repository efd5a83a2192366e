"""The one way the operator posts Kubernetes events (on transitions, never repeats)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf

from ..conditions import Event

# The API server refuses an event whose message is longer than this.
MAX_MESSAGE = 1024


def post(body: Any, events: Iterable[Event]) -> None:
    for e in events:
        message = e.message
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        kopf.event(body, type=e.type, reason=e.reason, message=message)
