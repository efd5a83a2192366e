"""The mail volume of a server."""

from __future__ import annotations

from typing import Any

from .. import naming
from .meta import Owner, metadata


def volume_claim(owner: Owner, size: str, storage_class: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(owner, naming.volume_claim(owner.name)),
        "spec": spec,
    }
