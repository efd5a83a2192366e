"""What the watch streams delivered, kept in memory for lookups without an API call.

Event handlers fill these (`handlers/observe.py`); kopf's own indexes would do
the same, but kopf holds every handler until every object of an indexed kind
has been indexed, so with indexes its per-object worker cap deadlocks a start
with more objects than the cap. Without indexes the cap can stay, and with it
the operator's memory bound at start-up (measured in the README).

A store groups values by a key (a plan's name, a server's uid); each object
(by its own key) sits in one group at a time and moves when it changes group.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from .models.common import ObjectMeta
from .models.conditions import ConditionType
from .models.plan import PlanJSON
from .models.server import PersonalMailServer, PersonalMailServerStatus

V = TypeVar("V")


class Watched(Generic[V]):
    """Thread-safe: written from kopf's event loop, read from handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[str, dict[str, V]] = {}
        self._group_of: dict[str, str] = {}

    def put(self, obj: str, group: str, value: V) -> None:
        with self._lock:
            self._discard(obj)
            self._groups.setdefault(group, {})[obj] = value
            self._group_of[obj] = group

    def drop(self, obj: str) -> None:
        with self._lock:
            self._discard(obj)

    def _discard(self, obj: str) -> None:
        group = self._group_of.pop(obj, None)
        if group is None:
            return
        members = self._groups.get(group, {})
        members.pop(obj, None)
        if not members:
            self._groups.pop(group, None)

    def get(self, group: str) -> list[V]:
        with self._lock:
            return list(self._groups.get(group, {}).values())

    def first(self, group: str) -> V | None:
        found = self.get(group)
        return found[0] if found else None

    def items(self) -> list[tuple[str, list[V]]]:
        """Every group and its values (a snapshot)."""
        with self._lock:
            return [(g, list(members.values())) for g, members in self._groups.items()]


# MailPlan specs by plan name, as stored (`reconcile.parse_plan` reports an invalid one).
PLANS: Watched[PlanJSON] = Watched()
# Servers by plan name, with what their backup schedule needs.
BACKUP_VIEW: Watched[PersonalMailServer] = Watched()
# The generation of every server a handler will take, by uid (the work to be done).
GENERATIONS: Watched[int] = Watched()


def backup_view(server: PersonalMailServer) -> PersonalMailServer:
    """Just what a server's backup schedule needs, from its watch event: who it is, when
    it was made (or deleted), its last backup and BackupHealthy."""
    meta, status = server.metadata, server.status
    wanted = ConditionType.BACKUP_HEALTHY
    return PersonalMailServer(
        metadata=ObjectMeta(
            name=meta.name,
            namespace=meta.namespace,
            uid=meta.uid,
            creation_timestamp=meta.creation_timestamp,
            deletion_timestamp=meta.deletion_timestamp,
        ),
        status=PersonalMailServerStatus(
            last_backup=status.last_backup,
            conditions=[c for c in status.conditions if c.type == wanted],
        ),
    )
