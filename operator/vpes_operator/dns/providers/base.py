"""The one small interface every DNS provider implements, and the shared RRset logic.

Providers that hold RRsets (RFC 2136, Route53) only say how to find a zone,
read an RRset and swap one RRset for another atomically (compare-and-swap);
`RRsetProvider` decides, the same way for all of them, what is theirs to
change: values it added itself, never a value someone else published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import ChangedError, DNSError, RecordConflictError
from ..ownership import Owned, OwnedRRset
from ..rdata import normalise
from ..records import PURPOSES, Record, txt_tag


@dataclass
class Result:
    """What a publish or removal did: what is owned now, and what went wrong."""

    owned: Owned
    problems: list[DNSError] = field(default_factory=list)
    changed: int = 0


class Provider(Protocol):
    """Publishes a server's records and removes them again."""

    name: str

    def publish(self, records: Sequence[Record], owned: Owned) -> Result:
        """Make `records` published; drop owned records no longer wanted."""
        ...

    def remove(self, owned: Owned) -> Result:
        """Remove everything in `owned` (and nothing else)."""
        ...

    def signed(self, domain: str) -> bool:
        """Whether the zone holding `domain` is signed (DNSSEC)."""
        ...


@dataclass(frozen=True)
class RRset:
    values: frozenset[str]
    ttl: int = 0


EMPTY = RRset(frozenset())


class RRsetStore(Protocol):
    def zone_for(self, domain: str) -> str:
        """The zone the server serves that holds `domain`; ZoneNotServedError otherwise."""
        ...

    def read(self, zone: str, name: str, rtype: str) -> RRset: ...

    def swap(self, zone: str, name: str, rtype: str, old: RRset, new: RRset) -> None:
        """Replace RRset `old` by `new` only if it is still exactly `old` (else ChangedError)."""
        ...

    def signed(self, zone: str) -> bool: ...


def clash(rtype: str, foreign: frozenset[str], want: frozenset[str]) -> set[str]:
    """Foreign values that make publishing `want` at this name wrong."""
    if not want:
        return set()
    if rtype == "TXT":
        tags = {txt_tag(v) for v in want} - {None}
        return {v for v in foreign - want if txt_tag(v) in tags}
    return set(foreign - want)


@dataclass
class _Want:
    domain: str
    values: set[str]
    ttl: int
    kinds: set[str]


class RRsetProvider:
    """The Provider of any RRset store, with ownership and conflict rules."""

    def __init__(self, name: str, store: RRsetStore) -> None:
        self.name = name
        self.store = store
        self._zones: dict[str, str] = {}

    def _zone(self, domain: str) -> str:
        if domain not in self._zones:
            self._zones[domain] = self.store.zone_for(domain)
        return self._zones[domain]

    def signed(self, domain: str) -> bool:
        return self.store.signed(self._zone(domain))

    def publish(self, records: Sequence[Record], owned: Owned) -> Result:
        want: dict[tuple[str, str], _Want] = {}
        for r in records:
            if r.shared:
                continue
            entry = want.setdefault((r.name, r.type), _Want(r.domain, set(), r.ttl, set()))
            entry.values.add(normalise(r.type, r.value))
            entry.kinds.add(r.kind)
        result = Result(Owned(provider=self.name, rrsets={}))
        failed_domains: set[str] = set()
        for key in sorted(set(want) | set(owned.rrsets)):
            name, rtype = key
            mine = owned.rrsets.get(key)
            w = want.get(key)
            domain = w.domain if w else name
            if w is not None and domain in failed_domains:
                if mine:
                    result.owned.rrsets[key] = mine
                continue
            try:
                zone = mine.zone if mine else self._zone(domain)
                kept = self._converge(zone, name, rtype, mine, w, result)
            except DNSError as e:
                result.problems.append(e)
                if mine:
                    result.owned.rrsets[key] = mine  # unknown: keep claiming what was ours
                if e.fatal:
                    return self._keep_rest(result, owned, want)
                if w is not None and not isinstance(e, RecordConflictError | ChangedError):
                    failed_domains.add(domain)
                continue
            if kept is not None:
                result.owned.rrsets[key] = kept
        return result

    def _keep_rest(
        self, result: Result, owned: Owned, want: dict[tuple[str, str], _Want]
    ) -> Result:
        for key, rr in owned.rrsets.items():
            result.owned.rrsets.setdefault(key, rr)
        return result

    def _converge(
        self,
        zone: str,
        name: str,
        rtype: str,
        mine: OwnedRRset | None,
        w: _Want | None,
        result: Result,
    ) -> OwnedRRset | None:
        ours = frozenset(mine.values) if mine else frozenset()
        target = frozenset(w.values) if w else frozenset()
        for _attempt in range(3):
            current = self.store.read(zone, name, rtype)
            foreign = current.values - ours
            bad = clash(rtype, foreign, target)
            if bad and w is not None:
                what = ", ".join(sorted(PURPOSES[k].split(" (")[0] for k in w.kinds))
                raise RecordConflictError(
                    f"{rtype} {name} already holds {', '.join(repr(v[:60]) for v in sorted(bad))}, "
                    f"which vpes did not publish ({what}): remove it, or set this domain's DNS to "
                    "Manual, and the operator publishes its own"
                )
            new_values = foreign | target
            ttl = w.ttl if w else current.ttl
            if new_values == current.values and (not target or current.ttl == ttl):
                break
            new = RRset(new_values, ttl if new_values else 0)
            try:
                self.store.swap(zone, name, rtype, current, new)
            except ChangedError:
                continue
            result.changed += 1
            break
        else:
            raise ChangedError(
                f"{rtype} {name} kept changing while vpes updated it; it retries later"
            )
        if not target:
            return None
        # Values that were there before us stay someone else's.
        added = tuple(sorted(target - (foreign - ours)))
        return OwnedRRset(zone, name, rtype, added, w.ttl if w else 0) if added else None

    def remove(self, owned: Owned) -> Result:
        result = Result(Owned(provider=self.name, rrsets={}))
        for key, mine in sorted(owned.rrsets.items()):
            try:
                self._converge(mine.zone, mine.name, mine.type, mine, None, result)
            except DNSError as e:
                result.problems.append(e)
                result.owned.rrsets[key] = mine
                if e.fatal:
                    for k, rr in owned.rrsets.items():
                        result.owned.rrsets.setdefault(k, rr)
                    break
        return result
