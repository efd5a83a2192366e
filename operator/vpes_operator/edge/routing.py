"""Which server the shared edge routes each hosted domain to, and who lost one.

A domain belongs to one server. When several servers list it in spec.domains,
the server created first has it (creationTimestamp, then namespace/name, so a
tie in the same second is still decided the same way every time); the others
get nothing routed for it and their DomainsRouted condition names the owner.
The routing follows the fleet: when the owner is deleted, or drops the
domain, the next claimant in that order gets it.

A server being deleted routes nothing (its mail goes nowhere anyway), and a
server that is not Running or ready is still routed: the edge queues its mail
until it answers.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..conditions import Cond
from ..models.common import DOMAIN_PATTERN
from ..models.conditions import ConditionType, Reason
from ..models.server import PersonalMailServer

_DOMAIN_RE = re.compile(DOMAIN_PATTERN)
_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)
EARLIER = "created earlier"
TIED = "created in the same second, first by namespace/name"


@dataclass(frozen=True)
class ServerKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Taken:
    """A domain a server lists but another server has."""

    domain: str
    owner: ServerKey
    earlier: bool  # the owner was created in an earlier second


@dataclass(frozen=True)
class Routing:
    # domain → the server that has it, sorted by domain.
    owners: dict[str, ServerKey]
    # The domains each live server lists but does not have.
    taken: dict[ServerKey, tuple[Taken, ...]]

    def domains_of(self, server: ServerKey) -> tuple[str, ...]:
        """The domains `server` has, in domain order (one index for the whole fleet:
        a scan of every domain per server made the build quadratic)."""
        return self._by_owner.get(server, ())

    @functools.cached_property
    def _by_owner(self) -> dict[ServerKey, tuple[str, ...]]:
        index: dict[ServerKey, list[str]] = {}
        for domain, owner in self.owners.items():
            index.setdefault(owner, []).append(domain)
        return {owner: tuple(domains) for owner, domains in index.items()}


def key_of(server: PersonalMailServer) -> ServerKey:
    return ServerKey(server.metadata.namespace, server.metadata.name)


def live(servers: Iterable[PersonalMailServer]) -> list[PersonalMailServer]:
    """The servers not being deleted, oldest first (creation, then namespace/name)."""
    return sorted(
        (s for s in servers if not s.metadata.deletion_timestamp),
        key=lambda s: (s.metadata.creation_timestamp or _LATEST, *_name(s)),
    )


def _name(server: PersonalMailServer) -> tuple[str, str]:
    return server.metadata.namespace, server.metadata.name


def listed_domains(server: PersonalMailServer) -> tuple[str, ...]:
    """spec.domains as stored, sorted; a value that is no domain name (the API server
    refuses those) is never routed: it could not be a table key."""
    raw = server.spec.get("domains")
    values = raw if isinstance(raw, list) else []
    return tuple(sorted({d for d in values if isinstance(d, str) and _DOMAIN_RE.fullmatch(d)}))


def route(servers: Iterable[PersonalMailServer]) -> Routing:
    """Each domain to the first server that lists it; what the later ones lost."""
    owners: dict[str, PersonalMailServer] = {}
    taken: dict[ServerKey, list[Taken]] = {}
    for server in live(servers):
        me = key_of(server)
        taken[me] = []
        for domain in listed_domains(server):
            first = owners.setdefault(domain, server)
            if first is not server:
                earlier = (first.metadata.creation_timestamp or _LATEST) < (
                    server.metadata.creation_timestamp or _LATEST
                )
                taken[me].append(Taken(domain, key_of(first), earlier))
    return Routing(
        owners={d: key_of(owners[d]) for d in sorted(owners)},
        taken={k: tuple(v) for k, v in taken.items()},
    )


def domains_routed(server: ServerKey, routing: Routing) -> Cond:
    """DomainsRouted of a live server: True when the edge routes every domain it lists."""
    lost = routing.taken.get(server, ())
    if not lost:
        n = len(routing.domains_of(server))
        return Cond(
            ConditionType.DOMAINS_ROUTED,
            True,
            Reason.ROUTED,
            f"the edge routes mail for {'its domain' if n == 1 else f'all {n} domains'} "
            "to this server",
        )
    said = ", ".join(
        f"{t.domain} is already served by {t.owner} ({EARLIER if t.earlier else TIED})"
        for t in lost
    )
    them = "it" if len(lost) == 1 else "them"
    return Cond(
        ConditionType.DOMAINS_ROUTED,
        False,
        Reason.DOMAIN_TAKEN,
        f"{said}; remove {them} from spec.domains or ask the provider",
    )
