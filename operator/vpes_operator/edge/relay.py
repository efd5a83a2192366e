"""The outbound relay's part of the edge: the maps' ``senders``, ``limits`` and ``held``
lines, and the relay's secret material in N shard Secrets. Pure builders.

- ``senders``: ``@example.com ns/name``, each routed domain and the one server that
  may send as it (Postfix smtpd_sender_login_maps form).
- ``limits``: ``ns/name <recipients-per-hour> <token>``, every live server: its
  plan's outboundPerHour (recipients; 0: may not send) and the last
  ``vpes.io/release-outbound`` value the operator acted on (``-``: none). A new
  token makes the relay forget the server's count.
- ``held``: ``ns/name <reason>``, the servers status.outbound says are held.

Shard ``i`` of N (``<prefix>-<i>``) holds every server whose
``int(sha256(b"ns/name").hexdigest(), 16) % N`` is ``i``: ``users-<i>`` (Dovecot
passwd-file lines ``ns/name:{SSHA512}...``), ``dkim-<i>`` (``<domain> <selector>
<keyfile>``, only the domains the server has: a domain another server owns is
never signed for it) and one ``<selector>.<domain>.key`` per key (PKCS#8 PEM, as
in the tenant's own Secret). Every shard is built, empty or not, so that the
relay's projected volume is complete.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .. import naming
from ..credentials import Material
from ..models.plan import MailPlanSpec, PlanJSON
from ..models.server import PersonalMailServer
from ..settings import OperatorSettings
from .routing import Routing, ServerKey, key_of

RELEASE_ANNOTATION = f"{naming.PREFIX}/release-outbound"
NO_TOKEN = "-"  # noqa: S105 (no release yet, not a secret)
COMPONENT = "edge-relay"
# What a Secret may hold (1 MiB, its data base64-encoded), less room for its metadata.
MAX_SHARD_BYTES = 1_000_000
_TOKEN_JUNK = re.compile(r"[^!-~]")


@dataclass(frozen=True)
class RelayEntry:
    """What the relay needs of one server: its password's hash and its DKIM keys
    (domain → PEM), from the server's credentials (``entry``)."""

    password_hash: str
    rsa: tuple[tuple[str, str], ...] = ()
    ed25519: tuple[tuple[str, str], ...] = ()


def entry(material: Material) -> RelayEntry:
    return RelayEntry(
        password_hash=material.relay_password_hash,
        rsa=tuple(sorted(material.dkim_keys.items())),
        ed25519=tuple(sorted(material.dkim_ed25519_keys.items())),
    )


def token(value: str | None) -> str:
    """A release token as the ``limits`` file carries it: one word of printable ASCII."""
    text = _TOKEN_JUNK.sub("", value or "")[:64]
    return text or NO_TOKEN


def limit_of(plan: PlanJSON | None) -> int:
    try:
        spec = MailPlanSpec.model_validate(plan or {})
    except ValidationError:
        spec = MailPlanSpec()
    return spec.outbound_per_hour


def held_reason(server: PersonalMailServer) -> str | None:
    """The reason a held server's mail is deferred (None: not held)."""
    out = server.status.outbound
    if out is None or not out.held:
        return None
    return " ".join((out.reason or "outbound mail is held").split())


def outbound_lines(
    fleet: Iterable[PersonalMailServer], routed: Routing, plans: Mapping[str, PlanJSON]
) -> dict[str, list[str]]:
    """The ``senders``, ``limits`` and ``held`` lines of the live servers `fleet`."""
    lines: dict[str, list[str]] = {"senders": [], "limits": [], "held": []}
    for server in fleet:
        key = key_of(server)
        for domain in routed.domains_of(key):
            lines["senders"].append(f"@{domain} {key}")
        out = server.status.outbound
        released = token(out.released_token if out else None)
        lines["limits"].append(f"{key} {limit_of(plans.get(server.plan))} {released}")
        reason = held_reason(server)
        if reason is not None:
            lines["held"].append(f"{key} {reason}")
    return lines


def shard_of(key: ServerKey | str, shards: int) -> int:
    return int(hashlib.sha256(str(key).encode()).hexdigest(), 16) % shards


def key_file(selector: str, domain: str) -> str:
    return f"{selector}.{domain}.key"


@dataclass
class _Shard:
    users: list[str] = field(default_factory=list)
    dkim: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)

    def data(self, i: int) -> dict[str, str]:
        out = {
            f"users-{i}": "".join(f"{u}\n" for u in sorted(self.users)),
            f"dkim-{i}": "".join(f"{d}\n" for d in sorted(self.dkim)),
        }
        out.update(sorted(self.keys.items()))
        return out


def shards(
    fleet: Iterable[ServerKey],
    entries: Mapping[str, RelayEntry],
    routed: Routing,
    selector: str,
    count: int,
) -> list[dict[str, str]]:
    """The data of each of the `count` shards: the live servers `fleet` that have an
    entry (a server whose credentials were never read is not there yet)."""
    built = [_Shard() for _ in range(count)]
    for key in fleet:
        found = entries.get(str(key))
        if found is None or not found.password_hash:
            continue
        shard = built[shard_of(key, count)]
        shard.users.append(f"{key}:{found.password_hash}")
        owned = set(routed.domains_of(key))
        for sel, keys in ((selector, found.rsa), (f"{selector}-ed25519", found.ed25519)):
            for domain, pem in keys:
                if domain in owned:
                    name = key_file(sel, domain)
                    shard.dkim.append(f"{domain} {sel} {name}")
                    shard.keys[name] = pem
    return [s.data(i) for i, s in enumerate(built)]


def encoded_size(data: Mapping[str, str]) -> int:
    """Bytes the data takes in the Secret (values base64-encoded)."""
    return sum(len(k) + 4 * ((len(v.encode()) + 2) // 3) for k, v in data.items())


def oversized(data: list[dict[str, str]]) -> list[tuple[int, int]]:
    """The shards (index, bytes) that would not fit in a Secret."""
    return [(i, n) for i, d in enumerate(data) if (n := encoded_size(d)) > MAX_SHARD_BYTES]


def secret_name(settings: OperatorSettings, i: int) -> str:
    return f"{settings.relay_secret_prefix}-{i}"


def shard_secret(settings: OperatorSettings, i: int, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(settings, i),
            "namespace": settings.operator_namespace,
            "labels": {
                "app.kubernetes.io/part-of": "vpes",
                "app.kubernetes.io/managed-by": naming.MANAGED_BY,
                naming.LABEL_COMPONENT: COMPONENT,
            },
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def decoded(secret: Mapping[str, Any] | None) -> dict[str, str]:
    raw = (secret or {}).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in raw.items()}


def entries_from_shards(
    shard_data: Iterable[Mapping[str, str]], senders: str
) -> dict[str, RelayEntry]:
    """The entries the published shards hold (so that a restarted operator publishes
    every server before it has read each one's credentials again); `senders` is the
    published maps' file (domain → server)."""
    owner = {}
    for line in senders.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("@"):
            owner[parts[0][1:]] = parts[1]
    hashes: dict[str, str] = {}
    rsa: dict[str, list[tuple[str, str]]] = {}
    ed: dict[str, list[tuple[str, str]]] = {}
    for data in shard_data:
        for name, text in data.items():
            if name.startswith("users-"):
                for line in text.splitlines():
                    who, _, hashed = line.partition(":")
                    hashes[who] = hashed
        for name, text in data.items():
            if not name.startswith("dkim-"):
                continue
            for line in text.splitlines():
                parts = line.split()
                if len(parts) != 3 or parts[0] not in owner or parts[2] not in data:
                    continue
                into = ed if parts[1].endswith("-ed25519") else rsa
                into.setdefault(owner[parts[0]], []).append((parts[0], data[parts[2]]))
    return {
        who: RelayEntry(h, tuple(sorted(rsa.get(who, []))), tuple(sorted(ed.get(who, []))))
        for who, h in hashes.items()
    }
