"""Kubernetes-style conditions: set one, keep lastTransitionTime unless the status flips."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

Conditions = list[dict[str, Any]]


@dataclass(frozen=True)
class Cond:
    type: str
    status: bool
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return "True" if self.status else "False"


def timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def find(conditions: Conditions, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: Conditions, type_: str) -> bool:
    c = find(conditions, type_)
    return c is not None and c.get("status") == "True"


def set_condition(
    conditions: Conditions, cond: Cond, *, generation: int | None, now: dt.datetime
) -> Conditions:
    """A new list with `cond` set; the transition time moves only when the status does."""
    old = find(conditions, cond.type)
    changed = old is None or old.get("status") != cond.status_text
    entry: dict[str, Any] = {
        "type": cond.type,
        "status": cond.status_text,
        "reason": cond.reason,
        "message": cond.message,
        "lastTransitionTime": timestamp(now) if changed else old["lastTransitionTime"],  # type: ignore[index]
    }
    if generation is not None:
        entry["observedGeneration"] = generation
    out = [c for c in conditions if c.get("type") != cond.type] + [entry]
    return sorted(out, key=lambda c: str(c["type"]))


def transitions(before: Conditions, after: Conditions) -> list[dict[str, Any]]:
    """Conditions whose status or reason changed: each is worth one event."""
    out = []
    for c in after:
        old = find(before, c["type"])
        if old is None or old.get("status") != c["status"] or old.get("reason") != c["reason"]:
            out.append(c)
    return out
