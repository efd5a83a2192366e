"""Kubernetes events for condition transitions (only transitions, never repeats)."""

from __future__ import annotations

from typing import Any

import kopf

# The API server refuses an event whose message is longer than this.
MAX_MESSAGE = 1024


def post_transitions(body: Any, events: list[dict[str, str]]) -> None:
    for e in events:
        message = e["message"]
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        kopf.event(body, type=e["type"], reason=e["reason"], message=message)
