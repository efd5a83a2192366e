"""Kubernetes events for condition transitions (only transitions, never repeats)."""

from __future__ import annotations

from typing import Any

import kopf


def post_transitions(body: Any, events: list[dict[str, str]]) -> None:
    for e in events:
        kopf.event(body, type=e["type"], reason=e["reason"], message=e["message"])
