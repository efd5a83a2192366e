"""Live checks with dnspython against the configured resolvers.

Each record gets a verdict: Pass, Fail (with what was found and how to fix
it) or Unknown (no resolver answered). The outbound addresses are looked up
in DNS blocklists (RFC 5782).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from . import rdata
from .errors import UnreachableError
from .providers.base import clash
from .providers.rfc2136 import split_host_port
from .records import Record

PASS, FAIL, UNKNOWN = "Pass", "Fail", "Unknown"


@dataclass(frozen=True)
class Check:
    record: Record
    verdict: str
    found: tuple[str, ...]
    fix: str | None = None


@dataclass(frozen=True)
class Listing:
    address: str
    zone: str
    reason: str


class Resolvers:
    """Plain stub queries to the configured resolvers, first that answers wins."""

    def __init__(self, resolvers: Sequence[str], timeout: float) -> None:
        if resolvers:
            self.servers = [split_host_port(r) for r in resolvers]
        else:
            import dns.resolver

            system = dns.resolver.Resolver()
            self.servers = [(str(ns), 53) for ns in system.nameservers]
        self.timeout = timeout
        self.dead: str | None = None  # once none answers, the rest of a run fails fast

    def query(self, name: str, rtype: str) -> dns.message.Message:
        if self.dead:
            raise UnreachableError(self.dead)
        q = dns.message.make_query(name, rtype, want_dnssec=rtype == "DNSKEY")
        errors = []
        for host, port in self.servers:
            try:
                r, _ = dns.query.udp_with_fallback(q, host, timeout=self.timeout, port=port)
            except (OSError, dns.exception.DNSException, EOFError) as e:
                errors.append(f"{host}:{port}: {type(e).__name__}")
                continue
            if r.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                return r
            errors.append(f"{host}:{port}: {dns.rcode.to_text(r.rcode())}")
        message = f"no resolver answered {rtype} {name} ({'; '.join(errors)})"
        if all("Timeout" in e or "Error" in e for e in errors):
            self.dead = message
        raise UnreachableError(message)

    def values(self, name: str, rtype: str) -> tuple[str, ...]:
        r = self.query(name, rtype)
        want = dns.rdatatype.from_text(rtype)
        out: list[str] = []
        for rrset in r.answer:
            if rrset.rdtype == want:
                out += [rdata.canonical(rd) for rd in rrset]
        return tuple(sorted(set(out)))

    def zone_apex(self, domain: str) -> str | None:
        r = self.query(domain, "SOA")
        for section in (r.answer, r.authority):
            for rrset in section:
                if rrset.rdtype == dns.rdatatype.SOA:
                    return str(rrset.name.to_text(omit_final_dot=True))
        return None

    def signed(self, domain: str) -> bool:
        """Whether the zone of `domain` publishes DNSKEYs (the zone signals DNSSEC)."""
        try:
            apex = self.zone_apex(domain)
            return apex is not None and bool(self.values(apex, "DNSKEY"))
        except UnreachableError:
            return False


def check(resolvers: Resolvers, record: Record) -> Check:
    expected = rdata.normalise(record.type, record.value)
    try:
        found = resolvers.values(record.name, record.type)
    except UnreachableError as e:
        return Check(record, UNKNOWN, (), f"could not check: {e.message}")
    publish = f"publish {record.type} {record.name} {record.value!r} (TTL {record.ttl})"
    if expected not in found:
        if not found:
            return Check(record, FAIL, found, f"missing: {publish}")
        return Check(record, FAIL, found, f"wrong value: {publish} in place of {', '.join(found)}")
    others = clash(record.type, frozenset(found) - {expected}, frozenset({expected}))
    if others:
        return Check(
            record,
            FAIL,
            found,
            f"conflicting: remove {', '.join(sorted(others))} from {record.type} {record.name}; "
            "only the value vpes publishes may stay",
        )
    return Check(record, PASS, found)


def check_all(resolvers: Resolvers, records: Sequence[Record]) -> list[Check]:
    return [check(resolvers, r) for r in records]


def reverse_name(address: str, zone: str) -> str:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        labels = list(reversed(str(ip).split(".")))
    else:
        labels = list(reversed(ip.exploded.replace(":", "")))
    return ".".join(labels) + "." + zone


class DNSBLCache:
    """Blocklist answers shared by every server for a few minutes: one query, not one per tenant."""

    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[float, Listing | None]] = {}

    def lookup(self, resolvers: Resolvers, address: str, zone: str) -> Listing | None:
        key = (address, zone)
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(key)
            if hit and now - hit[0] < self.ttl:
                return hit[1]
        listing = _lookup(resolvers, address, zone)
        with self._lock:
            self._seen[key] = (now, listing)
        return listing


def _lookup(resolvers: Resolvers, address: str, zone: str) -> Listing | None:
    name = reverse_name(address, zone)
    try:
        codes = [v for v in resolvers.values(name, "A") if ipaddress.ip_address(v) in _LOOPBACK_NET]
        if not codes:
            return None
        reason = ", ".join(resolvers.values(name, "TXT")) or "listed (" + ", ".join(codes) + ")"
    except UnreachableError:
        return None  # a blocklist that does not answer lists nobody
    return Listing(address, zone, reason)


_LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")


def dnsbl(
    resolvers: Resolvers, addresses: Sequence[str], zones: Sequence[str], cache: DNSBLCache
) -> list[Listing]:
    out = []
    for a in addresses:
        try:
            net = ipaddress.ip_network(a, strict=False)
        except ValueError:
            continue
        if net.num_addresses != 1:
            continue  # a network: its addresses are not checked one by one
        for z in zones:
            hit = cache.lookup(resolvers, str(net.network_address), z)
            if hit is not None:
                out.append(hit)
    return out
