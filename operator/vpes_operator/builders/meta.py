"""Object metadata shared by every child of a server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import API_VERSION, naming


@dataclass(frozen=True)
class Owner:
    """The PersonalMailServer that owns the objects being built."""

    name: str
    namespace: str
    uid: str
    plan: str


def metadata(owner: Owner, name: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner.namespace,
        "labels": naming.labels(owner.name, owner.plan),
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": "PersonalMailServer",
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    meta.update(extra)
    return meta
