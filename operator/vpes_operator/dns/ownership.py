"""Which records the operator created: the only ones it ever changes or deletes.

A server's owned records live in its ConfigMap `<server>-dns` (key
`owned.json`), written after every publish. The ConfigMap carries a finalizer
of its own, so that it outlives the server until the server's DNS cleanup has
read it, whatever deletion propagation was asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .. import naming
from ..builders.meta import Owner, metadata
from ..clients.kube import Kube
from ..models.kube import ConfigMap

OWNED_KEY = "owned.json"
CM_FINALIZER = f"{naming.PREFIX}/dns-records"


def config_map_name(server: str) -> str:
    return f"{server}-dns"


@dataclass(frozen=True)
class OwnedRRset:
    """The values the operator added to one RRset (others there are not its own)."""

    zone: str
    name: str
    type: str
    values: tuple[str, ...]
    ttl: int

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.type)


@dataclass
class Owned:
    """Everything one server published, through one provider."""

    provider: str = ""
    rrsets: dict[tuple[str, str], OwnedRRset] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.rrsets)

    def dump(self) -> str:
        doc = {
            "provider": self.provider,
            "rrsets": [
                {
                    "zone": r.zone,
                    "name": r.name,
                    "type": r.type,
                    "values": list(r.values),
                    "ttl": r.ttl,
                }
                for _, r in sorted(self.rrsets.items())
            ],
        }
        return json.dumps(doc, sort_keys=True, indent=1)

    @classmethod
    def load(cls, text: str | None) -> Owned:
        if not text:
            return cls()
        doc = json.loads(text)
        out = cls(provider=str(doc.get("provider", "")))
        for r in doc.get("rrsets", []):
            rr = OwnedRRset(
                str(r["zone"]), str(r["name"]), str(r["type"]), tuple(r["values"]), int(r["ttl"])
            )
            out.rrsets[rr.key] = rr
        return out


def read(kube: Kube, namespace: str, server: str) -> Owned:
    cm = kube.read(ConfigMap, namespace, config_map_name(server))
    return Owned.load(cm.data.get(OWNED_KEY) if cm else None)


def write(kube: Kube, owner: Owner, owned: Owned, *, keep: bool = True) -> None:
    """Store the owned set; only once something was published (no empty ConfigMap).

    `keep=False` (after cleanup) drops the ConfigMap's finalizer: garbage
    collection then takes it with the server.
    """
    name = config_map_name(owner.name)
    if not owned and kube.read(ConfigMap, owner.namespace, name) is None:
        return
    meta = metadata(owner, name, finalizers=[CM_FINALIZER] if keep else [])
    meta["labels"][naming.LABEL_COMPONENT] = "dns"
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": {OWNED_KEY: owned.dump()},
        }
    )
