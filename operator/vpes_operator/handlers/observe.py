"""What the watch streams deliver, kept in memory: the metrics' view of every server,
the plans, each plan's servers for their backup schedule, what the edge's maps are
built from, and the work to be done (see `watched.py` for why these are not kopf
indexes)."""

from __future__ import annotations

from typing import Any

import kopf

from .. import GROUP, VERSION, metrics, watched
from ..clients import inventory
from ..models.server import PersonalMailServer


@kopf.on.event(GROUP, VERSION, "personalmailservers")
async def server_seen(body: kopf.Body, type: str, **_: Any) -> None:
    deleted = type == "DELETED"
    server = PersonalMailServer.model_validate(dict(body))
    metrics.SERVERS.update(server, deleted=deleted)
    uid = server.metadata.uid
    if deleted:
        watched.BACKUP_VIEW.drop(uid)
        watched.GENERATIONS.drop(uid)
        watched.EDGE.drop(uid)
        watched.RELAY.drop(f"{server.metadata.namespace}/{server.metadata.name}")
        return
    watched.BACKUP_VIEW.put(uid, server.plan, watched.backup_view(server))
    watched.EDGE.put(uid, uid, watched.edge_view(server))
    if inventory.awaits_handler(server.metadata):
        watched.GENERATIONS.put(uid, uid, server.metadata.generation or 0)
    else:
        watched.GENERATIONS.drop(uid)


@kopf.on.event(GROUP, VERSION, "mailplans")
async def plan_seen(name: str, spec: kopf.Spec, type: str, **_: Any) -> None:
    if type == "DELETED":
        watched.PLANS.drop(name)
    else:
        watched.PLANS.put(name, name, dict(spec))
