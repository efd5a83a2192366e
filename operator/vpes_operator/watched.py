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

from .edge.relay import RELEASE_ANNOTATION, RelayEntry
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
        # Counts the puts and drops that changed something: a reader that keeps the
        # number it last saw knows whether anything changed since.
        self.version = 0

    def put(self, obj: str, group: str, value: V) -> None:
        with self._lock:
            group_before = self._group_of.get(obj)
            if group_before == group and self._groups[group][obj] == value:
                return
            self._discard(obj)
            self._groups.setdefault(group, {})[obj] = value
            self._group_of[obj] = group
            self.version += 1

    def put_absent(self, obj: str, group: str, value: V) -> None:
        """`put`, unless `obj` is there already (what is newer stays)."""
        with self._lock:
            if obj in self._group_of:
                return
        self.put(obj, group, value)

    def drop(self, obj: str) -> None:
        with self._lock:
            if obj in self._group_of:
                self._discard(obj)
                self.version += 1

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

    def groups(self) -> set[str]:
        with self._lock:
            return set(self._groups)

    def values(self) -> list[V]:
        """Every value of every group (a snapshot)."""
        with self._lock:
            return [v for members in self._groups.values() for v in members.values()]

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
# Every server, by uid, with what the edge's maps are built from (`edge_view`).
EDGE: Watched[PersonalMailServer] = Watched()
# What the outbound relay needs of each server ("ns/name"): its password's hash and
# DKIM keys, put by the server's reconcile (which reads its credentials Secret
# anyway) and at start-up from the published shards: no list or watch of Secrets.
RELAY: Watched[RelayEntry] = Watched()


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


def edge_view(server: PersonalMailServer) -> PersonalMailServer:
    """What the edge's maps need of a server: who it is, when it was made (or deleted),
    its spec, its DomainsRouted and Deliverable, its outbound hold and the release
    annotation."""
    meta, status = server.metadata, server.status
    wanted = (ConditionType.DOMAINS_ROUTED, ConditionType.DELIVERABLE)
    release = meta.annotations.get(RELEASE_ANNOTATION)
    return PersonalMailServer(
        metadata=ObjectMeta(
            name=meta.name,
            namespace=meta.namespace,
            uid=meta.uid,
            generation=meta.generation,
            creation_timestamp=meta.creation_timestamp,
            deletion_timestamp=meta.deletion_timestamp,
            annotations={} if release is None else {RELEASE_ANNOTATION: release},
        ),
        spec=server.spec,
        status=PersonalMailServerStatus(
            conditions=[c for c in status.conditions if c.type in wanted],
            outbound=status.outbound,
        ),
    )
