"""Kubernetes-style conditions: set one, keep lastTransitionTime unless the status flips;
one event per transition (cert-manager's `util/reporter.go`).

The types and reasons, and what they mean, are the catalogue in `models.conditions`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .models.conditions import REQUESTED, Condition, Permanence, permanence

Conditions = list[Condition]
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Cond:
    """A condition to set: type, whether it is True (None: Unknown), reason and message."""

    type: str
    status: bool | None
    reason: str
    message: str

    @property
    def status_text(self) -> Literal["True", "False", "Unknown"]:
        if self.status is None:
            return "Unknown"
        return "True" if self.status else "False"


@dataclass(frozen=True)
class Event:
    """A Kubernetes event about one object."""

    type: EventType
    reason: str
    message: str


def at_second(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(microsecond=0)


def timestamp(now: dt.datetime) -> str:
    return at_second(now).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(raw: Iterable[Mapping[str, Any]] | None) -> Conditions:
    """Conditions as the API server stores them → typed."""
    return [Condition.model_validate(c) for c in raw or []]


def wire(conditions: Iterable[Condition]) -> list[dict[str, Any]]:
    return [c.wire() for c in conditions]


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Iterable[Condition], type_: str) -> bool:
    c = find(conditions, type_)
    return c is not None and c.status == "True"


def set_condition(
    conditions: Conditions, cond: Cond, *, generation: int | None, now: dt.datetime
) -> Conditions:
    """A new list with `cond` set; the transition time moves only when the status does."""
    old = find(conditions, cond.type)
    entry = Condition(
        type=cond.type,
        status=cond.status_text,
        reason=cond.reason,
        message=cond.message,
        last_transition_time=(
            old.last_transition_time
            if old is not None and old.status == cond.status_text
            else at_second(now)
        ),
        observed_generation=generation,
    )
    out = [c for c in conditions if c.type != cond.type] + [entry]
    return sorted(out, key=lambda c: c.type)


def transitions(before: Conditions, after: Conditions) -> Conditions:
    """Conditions whose status or reason changed: each is worth one event."""
    out = []
    for c in after:
        old = find(before, c.type)
        if old is None or old.status != c.status or old.reason != c.reason:
            out.append(c)
    return out


def events(before: Conditions, after: Conditions) -> list[Event]:
    """One Kubernetes event per condition transition: type, reason, message.

    A Warning is for something wrong: a condition turning bad, or bad for a
    reason that is not simple progress (a new server's pod starting is Normal;
    a running server's pod failing is a Warning), unless it was asked for.
    """
    out = []
    for c in transitions(before, after):
        old = find(before, c.type)
        was_good = old is not None and old.good
        progress = permanence(c.reason) is Permanence.PROGRESS
        warning = not c.good and (not progress or was_good) and c.reason not in REQUESTED
        out.append(
            Event(
                "Warning" if warning else "Normal",
                c.reason,
                f"{c.type}={c.status}: {c.message}",
            )
        )
    return out
