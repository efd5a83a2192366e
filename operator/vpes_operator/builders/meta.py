"""Object metadata shared by every child of a server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import API_VERSION, naming
from ..models.server import PersonalMailServer


@dataclass(frozen=True)
class Owner:
    """The PersonalMailServer that owns the objects being built."""

    name: str
    namespace: str
    uid: str
    plan: str


PMS = "PersonalMailServer"


def owner_of(server: PersonalMailServer) -> Owner:
    """The server as the owner of the objects built for it."""
    meta = server.metadata
    return Owner(name=meta.name, namespace=meta.namespace, uid=meta.uid, plan=server.plan)


def owner_reference(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    """The controller reference of a child: deleting the owner deletes it."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(owner: Owner, name: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": naming.labels(owner.name, owner.plan),
        "ownerReferences": [owner_reference(API_VERSION, PMS, owner.name, owner.uid)],
    }
    meta.update(extra)
    return meta


def server_reference(name: str, namespace: str, uid: str) -> dict[str, Any]:
    """Enough of a PersonalMailServer to post an event about it."""
    return {
        "apiVersion": API_VERSION,
        "kind": PMS,
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
    }
