"""Read-modify-write of a PersonalMailServer's status, typed.

Several writers own parts of one status (the reconcile: phase, Ready and
Provisioned; DNS: records and its two conditions; backups: BackupHealthy and
lastBackup). Each computes its new status from the current one with a pure
function; this module reads, validates, writes with optimistic concurrency,
and reports the events the condition transitions deserve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import API_VERSION
from ..conditions import Event, events
from ..models.common import Model
from ..models.server import PersonalMailServerStatus
from .kube import Kube

PMS = "PersonalMailServer"
# (the object as read, its current status) → the new status, or None: nothing to write.
Mutation = Callable[[dict[str, Any], PersonalMailServerStatus], PersonalMailServerStatus | None]


def server_status(obj: dict[str, Any]) -> PersonalMailServerStatus:
    return PersonalMailServerStatus.model_validate(obj.get("status") or {})


def status_wire(status: Model) -> dict[str, Any]:
    """What was read plus what was set: never defaults nobody wrote."""
    return status.model_dump(by_alias=True, exclude_none=True, exclude_unset=True, mode="json")


@dataclass
class Written:
    """The status before the last attempt and after it (the same when nothing was written)."""

    before: PersonalMailServerStatus = field(default_factory=PersonalMailServerStatus)
    after: PersonalMailServerStatus = field(default_factory=PersonalMailServerStatus)
    written: bool = False

    @property
    def events(self) -> list[Event]:
        return events(self.before.conditions, self.after.conditions)


def update_server_status(kube: Kube, namespace: str, name: str, mutate: Mutation) -> Written:
    """Apply `mutate` to the server's current status and write the result if it changed."""
    out = Written()

    def raw(obj: dict[str, Any]) -> dict[str, Any] | None:
        out.before = out.after = server_status(obj)
        new = mutate(obj, out.before)
        if new is None or new == out.before:
            return None
        return status_wire(new)

    written = kube.update_status(API_VERSION, PMS, namespace, name, raw)
    if written is not None:
        out.after, out.written = server_status(written), True
    return out
