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

from .. import API_VERSION
from ..conditions import Event, events
from ..models.common import Model
from ..models.server import PersonalMailServer, PersonalMailServerStatus
from .kube import JSON, Kube

PMS = "PersonalMailServer"
# The server as read (its current status in `.status`) → the new status, or None:
# nothing to write.
Mutation = Callable[[PersonalMailServer], PersonalMailServerStatus | None]


def status_wire(status: Model) -> JSON:
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

    def raw(obj: JSON) -> JSON | None:
        server = PersonalMailServer.model_validate(obj)
        out.before = out.after = server.status
        new = mutate(server)
        if new is None or new == out.before:
            return None
        return status_wire(new)

    written = kube.update_status(API_VERSION, PMS, namespace, name, raw)
    if written is not None:
        out.after, out.written = PersonalMailServer.model_validate(written).status, True
    return out
