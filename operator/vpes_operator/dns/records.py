"""Every DNS record a customer domain needs, as named structured values (pure).

A record's `value` is its data exactly as a person types it into a DNS
provider's form: TXT as the text itself (unquoted, unsplit; providers split it
into 255-byte strings), names in other types fully qualified with the trailing
dot (`10 mx.example.net.`). Optional records are absent, never empty.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..models.server import DNSRecord
from ..render import layout
from ..settings import OperatorSettings

# Kinds of record, in the order a person reads them.
MX = "mx"
SPF = "spf"
DKIM = "dkim"
DMARC = "dmarc"
MTA_STS = "mta-sts"
MTA_STS_HOST = "mta-sts-host"
TLS_RPT = "tls-rpt"
SRV_SUBMISSIONS = "srv-submissions"
SRV_IMAPS = "srv-imaps"
SRV_POP3S = "srv-pop3s"
SRV_CALDAVS = "srv-caldavs"
SRV_CARDDAVS = "srv-carddavs"
AUTOCONFIG = "autoconfig"
AUTODISCOVER = "autodiscover"
OPENPGPKEY = "openpgpkey"
TLSA = "tlsa"
MAIL_HOST = "mail-host"

PURPOSES = {
    MX: "inbound mail goes to the provider's edge",
    SPF: "which servers may send mail for the domain (SPF)",
    DKIM: "the public key receivers check signatures with (DKIM)",
    DMARC: "what receivers do with mail failing SPF and DKIM (DMARC)",
    MTA_STS: "senders must use TLS; the id changes with the policy (MTA-STS)",
    MTA_STS_HOST: "where senders fetch the MTA-STS policy over HTTPS",
    TLS_RPT: "where senders report TLS failures (TLS-RPT)",
    SRV_SUBMISSIONS: "mail clients find the submission server (RFC 6186)",
    SRV_IMAPS: "mail clients find the IMAP server (RFC 6186)",
    SRV_POP3S: "mail clients find the POP3 server (RFC 6186)",
    SRV_CALDAVS: "calendar apps find the CalDAV server (RFC 6764)",
    SRV_CARDDAVS: "contacts apps find the CardDAV server (RFC 6764)",
    AUTOCONFIG: "Thunderbird-style client autoconfiguration",
    AUTODISCOVER: "Outlook-style client autodiscovery",
    OPENPGPKEY: "mail apps find the mailboxes' OpenPGP public keys (Web Key Directory, "
    "advanced method)",
    TLSA: "DANE: the edge MX's key, for senders that validate DNSSEC (shared by every "
    "domain; published once by the provider)",
    MAIL_HOST: "mail clients reach the server's own mail host (spec.mailHost) at its "
    "dedicated address",
}

# TXT records whose first tag makes them one of a kind at their name.
TXT_TAGS = ("v=spf1", "v=DMARC1", "v=DKIM1", "v=STSv1", "v=TLSRPTv1")


@dataclass(frozen=True)
class Record:
    """One record: the domain it serves, what it is for, and its exact data."""

    domain: str
    kind: str
    type: str
    name: str
    value: str
    ttl: int

    @property
    def shared(self) -> bool:
        """Not under the customer's domain (e.g. the edge MX's TLSA): not published per server."""
        return not (self.name == self.domain or self.name.endswith("." + self.domain))

    def model(self) -> DNSRecord:
        return DNSRecord(
            domain=self.domain,
            type=self.type,
            name=self.name,
            value=self.value,
            ttl=self.ttl,
            purpose=PURPOSES[self.kind],
        )

    def wire(self) -> dict[str, Any]:
        return self.model().wire()


@dataclass(frozen=True)
class ClientService:
    """Where mail clients reach one service: what the SRV records (RFC 6186) say and
    what the set-up endpoints (autoconfig, autodiscover, the panel's Apple profile)
    tell clients. Every service is TLS from the first byte (RFC 8314)."""

    kind: str  # the SRV record's kind (SRV_IMAPS, ...)
    service: str  # its SRV label: _<service>._tcp
    protocol: str  # "imap", "pop3" or "smtp"
    host: str
    port: int


def client_services(
    settings: OperatorSettings, mail_host: str | None = None
) -> tuple[ClientService, ...]:
    """The client services a hosted domain announces, in the SRV records' order: the
    edge's hosts, or with `mail_host` (a server's own mail host that is served, see
    `served_mail_host`) that host on the ports its dedicated address exposes (a service
    whose port it does not expose is not announced)."""
    edge = (
        ClientService(SRV_SUBMISSIONS, "submissions", "smtp", settings.smtp_host.rstrip("."), 465),
        ClientService(SRV_IMAPS, "imaps", "imap", settings.imap_host.rstrip("."), 993),
        ClientService(SRV_POP3S, "pop3s", "pop3", settings.imap_host.rstrip("."), 995),
    )
    if mail_host is None:
        return edge
    host = mail_host.rstrip(".")
    exposed = layout.DEDICATED_PORTS
    return tuple(
        replace(s, host=host, port=exposed[s.service]) for s in edge if s.service in exposed
    )


def served_mail_host(mail_host: str | None, dedicated: bool) -> str | None:
    """The mail host clients are sent to: a server's spec.mailHost when its plan has a
    dedicated address (`features.dedicatedAddress`: the tenant serves it straight, with
    a certificate for it); None (the edge's hosts) otherwise."""
    return mail_host if mail_host and dedicated else None


def dav_services(settings: OperatorSettings) -> tuple[ClientService, ...]:
    """CalDAV and CardDAV (RFC 6764), announced by the domains of servers whose plan has
    calendar and contacts: vpes-web on the edge's web name, HTTPS."""
    web = settings.edge_web_host.rstrip(".")
    return (
        ClientService(SRV_CALDAVS, "caldavs", "caldav", web, 443),
        ClientService(SRV_CARDDAVS, "carddavs", "carddav", web, 443),
    )


def client_service(
    settings: OperatorSettings, protocol: str, mail_host: str | None = None
) -> ClientService:
    """The one service of `protocol` ("imap", "pop3" or "smtp"), at the edge or at
    `mail_host` (as `client_services`)."""
    return next(s for s in client_services(settings, mail_host) if s.protocol == protocol)


def txt_tag(value: str) -> str | None:
    """The version tag that makes a TXT value one of a kind (v=spf1, v=DKIM1, ...)."""
    head = value.strip().split(";", 1)[0].split(" ", 1)[0].strip()
    return next((t for t in TXT_TAGS if head.lower() == t.lower()), None)


def fqdn(host: str) -> str:
    return host.rstrip(".") + "."


def spf_value(settings: OperatorSettings) -> str:
    terms = ["v=spf1"]
    for entry in settings.outbound_addresses:
        net = ipaddress.ip_network(entry, strict=False)
        prefix = "ip4" if net.version == 4 else "ip6"
        full = net.prefixlen == net.max_prefixlen
        terms.append(f"{prefix}:{net.network_address if full else net}")
    terms += [f"include:{d}" for d in settings.spf_includes]
    if len(terms) == 1:
        terms.append("mx")  # no outbound addresses configured: the MX hosts send
    terms.append(settings.spf_all)
    return " ".join(terms)


def mta_sts_policy(settings: OperatorSettings) -> str:
    """The policy file the edge serves at https://mta-sts.<domain>/.well-known/mta-sts.txt."""
    return (
        f"version: STSv1\r\nmode: {settings.mta_sts_mode}\r\nmx: {settings.mx_host.rstrip('.')}"
        f"\r\nmax_age: {settings.mta_sts_max_age}\r\n"
    )


def mta_sts_id(settings: OperatorSettings) -> str:
    """A policy id (1-32 alphanumerics) that changes exactly when the policy does."""
    return hashlib.sha256(mta_sts_policy(settings).encode()).hexdigest()[:20]


def domain_records(
    domain: str,
    settings: OperatorSettings,
    dkim: Mapping[str, str],
    *,
    dnssec: bool = False,
    calendar: bool = False,
    mail_host: str | None = None,
) -> list[Record]:
    """The records of one domain.

    `dkim` maps a selector to its TXT value (v=DKIM1; k=...; p=...); a domain
    whose key does not exist yet has no DKIM record. `dnssec` says whether the
    domain's zone is signed: only then are TLSA records worth anything.
    `calendar`: the server's plan sells calendar and contacts (the DAV SRV records).
    `mail_host`: the server's own mail host when it is served (`served_mail_host`):
    the mail clients' SRV records name it instead of the edge's hosts.
    """
    ttl = settings.dns_ttl
    web = fqdn(settings.edge_web_host)

    def rec(kind: str, type_: str, label: str, value: str) -> Record:
        name = f"{label}.{domain}" if label else domain
        return Record(domain, kind, type_, name, value, ttl)

    out = [
        rec(MX, "MX", "", f"10 {fqdn(settings.mx_host)}"),
        rec(SPF, "TXT", "", spf_value(settings)),
    ]
    for selector in sorted(dkim):
        out.append(rec(DKIM, "TXT", f"{selector}._domainkey", dkim[selector]))
    dmarc = f"v=DMARC1; p={settings.dmarc_policy}"
    if settings.dmarc_rua:
        dmarc += f"; rua=mailto:{settings.dmarc_rua}"
    out.append(rec(DMARC, "TXT", "_dmarc", dmarc))
    if settings.mta_sts_mode != "off":
        out.append(rec(MTA_STS, "TXT", "_mta-sts", f"v=STSv1; id={mta_sts_id(settings)}"))
        out.append(rec(MTA_STS_HOST, "CNAME", "mta-sts", web))
    if settings.tls_rpt_rua:
        out.append(
            rec(TLS_RPT, "TXT", "_smtp._tls", f"v=TLSRPTv1; rua=mailto:{settings.tls_rpt_rua}")
        )
    services = client_services(settings, mail_host) + (dav_services(settings) if calendar else ())
    for s in services:
        out.append(rec(s.kind, "SRV", f"_{s.service}._tcp", f"0 1 {s.port} {fqdn(s.host)}"))
    out += [
        rec(AUTOCONFIG, "CNAME", "autoconfig", web),
        rec(AUTODISCOVER, "CNAME", "autodiscover", web),
        rec(OPENPGPKEY, "CNAME", "openpgpkey", web),
    ]
    if dnssec:
        tlsa_name = f"_25._tcp.{settings.mx_host.rstrip('.')}"
        out += [Record(domain, TLSA, "TLSA", tlsa_name, v, ttl) for v in settings.dane_tlsa]
    return out


def server_records(
    domains: Iterable[str],
    settings: OperatorSettings,
    dkim: Mapping[str, Mapping[str, str]],
    signed: Mapping[str, bool] | None = None,
    *,
    calendar: bool = False,
    mail_host: str | None = None,
) -> list[Record]:
    """Every record of every domain, domains in order: what status.dnsRecords lists.
    `calendar`: the server's plan has features.calendar; `mail_host`: the server's own
    mail host, served (every domain's mail clients are sent to it)."""
    signed = signed or {}
    out: list[Record] = []
    for d in sorted(domains):
        out += domain_records(
            d,
            settings,
            dkim.get(d, {}),
            dnssec=signed.get(d, False),
            calendar=calendar,
            mail_host=mail_host,
        )
    return out
