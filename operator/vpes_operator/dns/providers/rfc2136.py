"""RFC 2136 dynamic updates signed with TSIG (dnspython), to the zone's primary.

Every change is a compare-and-swap: the update carries the RRset as it was
read as a value-dependent prerequisite (or "RRset does not exist"), so a
record someone else changed in between is never overwritten: the server
answers NXRRSET/YXRRSET and nothing happens.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from .. import rdata
from ..errors import (
    ChangedError,
    KeyRejectedError,
    ProviderNotConfiguredError,
    UnreachableError,
    UpdateRefusedError,
    ZoneNotServedError,
)
from .base import EMPTY, RRset, RRsetProvider

NAME = "rfc2136"


@dataclass(frozen=True)
class TSIGKey:
    name: str
    secret: str  # base64
    algorithm: str = "hmac-sha256"


def split_host_port(address: str, default_port: int = 53) -> tuple[str, int]:
    """'127.0.0.1', '127.0.0.1:5300', '[::1]:5300' or '::1' → (host, port)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest.lstrip(":") or default_port)
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, default_port


class RFC2136Store:
    """One primary server, one TSIG key."""

    def __init__(self, server: str, key: TSIGKey | None, timeout: float = 5.0) -> None:
        if not server:
            raise ProviderNotConfiguredError(
                "no RFC 2136 server is configured: the provider sets VPES_DNS_RFC2136_SERVER "
                "(and its TSIG key), or servers use another spec.dns.provider"
            )
        self.host, self.port = split_host_port(server)
        self.timeout = timeout
        self.keyring = None
        self.keyname: dns.name.Name | None = None
        self.algorithm = dns.tsig.HMAC_SHA256
        if key is not None:
            try:
                base64.b64decode(key.secret, validate=True)
            except (binascii.Error, ValueError):
                raise KeyRejectedError(
                    f"the TSIG secret of key {key.name!r} is not base64: fix the configured secret"
                ) from None
            self.keyname = dns.name.from_text(key.name)
            self.keyring = dns.tsigkeyring.from_text({key.name: key.secret})
            self.algorithm = dns.name.from_text(key.algorithm)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _send(self, msg: dns.message.Message) -> dns.message.Message:
        try:
            return dns.query.tcp(msg, self.host, timeout=self.timeout, port=self.port)
        except (dns.tsig.PeerBadKey, dns.tsig.PeerBadSignature, dns.message.UnknownTSIGKey) as e:
            raise KeyRejectedError(self._key_message(str(e))) from None
        except dns.tsig.PeerBadTime:
            raise KeyRejectedError(
                f"the DNS server {self.where} refused the TSIG signature's time: check the clocks"
            ) from None
        except (TimeoutError, OSError, dns.exception.Timeout, EOFError) as e:
            raise UnreachableError(
                f"the DNS server {self.where} cannot be reached ({type(e).__name__}: {e}): start "
                "it, or set VPES_DNS_RFC2136_SERVER (chart value dns.rfc2136.server) to the "
                "host:port of the zones' primary, and let the operator reach it (NetworkPolicy, "
                "firewall); the operator retries with back-off"
            ) from None

    def _key_message(self, detail: str) -> str:
        return (
            f"the DNS server {self.where} refused the TSIG key {str(self.keyname or '')!r} "
            f"({detail or 'bad key or signature'}): configure the key the server expects "
            "(name, algorithm and secret)"
        )

    def _ask(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message:
        """A non-recursive query to the primary itself."""
        q = dns.message.make_query(name, rdtype)
        q.flags &= ~dns.flags.RD
        return self._send(q)

    def zone_for(self, domain: str) -> str:
        """Ask the primary for the SOA of `domain`: the zone it is authoritative for."""
        r = self._ask(domain, dns.rdatatype.SOA)
        if r.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and r.flags & dns.flags.AA:
            for section in (r.answer, r.authority):
                for rrset in section:
                    if rrset.rdtype == dns.rdatatype.SOA:
                        return rrset.name.to_text(omit_final_dot=True)
        raise ZoneNotServedError(
            f"the DNS server {self.where} serves no zone containing {domain} "
            f"({dns.rcode.to_text(r.rcode())}): add the zone to the server, or set this "
            "server's spec.dns to Manual and publish the records listed in its status"
        )

    def read(self, zone: str, name: str, rtype: str) -> RRset:
        q = dns.message.make_query(name, rtype)
        q.flags &= ~dns.flags.RD
        r = self._send(q)
        if r.rcode() == dns.rcode.NXDOMAIN:
            return EMPTY
        if r.rcode() != dns.rcode.NOERROR:
            raise ZoneNotServedError(
                f"the DNS server {self.where} answered {dns.rcode.to_text(r.rcode())} for "
                f"{rtype} {name} in zone {zone}"
            )
        want = dns.rdatatype.from_text(rtype)
        for rrset in r.answer:
            if rrset.rdtype == want and rrset.name == dns.name.from_text(name):
                return RRset(frozenset(rdata.canonical(rd) for rd in rrset), rrset.ttl)
        return EMPTY

    def _rdataset(self, rtype: str, values: frozenset[str], ttl: int) -> dns.rdataset.Rdataset:
        rds = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.from_text(rtype))
        for v in sorted(values):
            rds.add(rdata.to_rdata(rtype, v), ttl)
        return rds

    def swap(self, zone: str, name: str, rtype: str, old: RRset, new: RRset) -> None:
        upd = dns.update.UpdateMessage(
            zone, keyring=self.keyring, keyname=self.keyname, keyalgorithm=self.algorithm
        )
        owner = dns.name.from_text(name)  # absolute: a str would be relative to the zone
        if old.values:
            upd.present(owner, self._rdataset(rtype, old.values, 0))
        else:
            upd.absent(owner, rtype)
        if not new.values:
            upd.delete(owner, rtype)
        else:
            if old.values and (old.values - new.values or old.ttl != new.ttl):
                upd.delete(owner, rtype)  # replaced as a whole: the prerequisite pins it
                upd.add(owner, self._rdataset(rtype, new.values, new.ttl))
            else:
                for v in sorted(new.values - old.values):
                    upd.add(owner, new.ttl, rdata.to_rdata(rtype, v))
        r = self._send(upd)
        code = r.rcode()
        if code == dns.rcode.NOERROR:
            return
        if code in (dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.YXDOMAIN, dns.rcode.NXDOMAIN):
            raise ChangedError(f"{rtype} {name} changed while vpes was updating it")
        if code == dns.rcode.NOTAUTH:
            if self.keyname is None or r.tsig_error:
                raise KeyRejectedError(
                    self._key_message(dns.rcode.to_text(dns.rcode.Rcode(r.tsig_error or code)))
                )
            raise ZoneNotServedError(
                f"the DNS server {self.where} is not authoritative for zone {zone}: add the "
                "zone to the server"
            )
        if code == dns.rcode.NOTZONE:
            raise ZoneNotServedError(f"{name} is not in zone {zone} on {self.where}")
        raise UpdateRefusedError(
            f"the DNS server {self.where} refused the update of {rtype} {name} in {zone} "
            f"({dns.rcode.to_text(code)}): allow updates of this zone with the operator's "
            "TSIG key"
        )

    def signed(self, zone: str) -> bool:
        r = self._ask(zone, dns.rdatatype.DNSKEY)
        return any(rr.rdtype == dns.rdatatype.DNSKEY for rr in r.answer)


def provider(server: str, key: TSIGKey | None, timeout: float = 5.0) -> RRsetProvider:
    return RRsetProvider(NAME, RFC2136Store(server, key, timeout))
