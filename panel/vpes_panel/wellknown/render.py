"""What each endpoint answers, as pure functions of the operator's settings (the
same `client_services` the SRV records are made from, the same MTA-STS policy
the TXT record's id is a hash of), the request's domain or address and, for the mail
clients' settings, the served mail host of the server that has the domain
(`Hosting.mail_host`: None sends clients to the edge's hosts)."""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
from vpes_operator.dns import records
from vpes_operator.settings import OperatorSettings

from .autodiscover import OUTLOOK_SCHEMA

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("vpes_panel.wellknown", "templates"),
    autoescape=True,  # XML: names and addresses come from the request
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
INCOMING = ("imap", "pop3")  # in the order a client should prefer them


@dataclass(frozen=True)
class OutlookProtocol:
    type: str  # IMAP, POP3, SMTP
    host: str
    port: int


def autoconfig(settings: OperatorSettings, domain: str, mail_host: str | None = None) -> str:
    """Thunderbird's config-v1.1.xml for `domain`: IMAP, POP3 and SMTP submission,
    each TLS from the first byte, the full address as the login (%EMAILADDRESS%); at
    `mail_host` when the domain's server has one served."""
    services = records.client_services(settings, mail_host)
    by_protocol = {s.protocol: s for s in services}
    return ENV.get_template("autoconfig.xml").render(
        domain=domain,
        incoming=[by_protocol[p] for p in INCOMING],
        outgoing=[s for s in services if s.protocol == "smtp"],
    )


def autodiscover(
    settings: OperatorSettings, address: str | None, mail_host: str | None = None
) -> str:
    """Outlook's autodiscover answer (the "outlook" response schema): IMAP and SMTP
    submission, `address` as the login name (none when the request gave none); at
    `mail_host` when the domain's server has one served."""
    services = [
        OutlookProtocol(s.protocol.upper(), s.host, s.port)
        for s in (records.client_service(settings, p, mail_host) for p in ("imap", "smtp"))
    ]
    return ENV.get_template("autodiscover.xml").render(
        schema=OUTLOOK_SCHEMA, services=services, address=address
    )


def mta_sts(settings: OperatorSettings) -> str | None:
    """The MTA-STS policy file, exactly what the _mta-sts TXT record's id is made from;
    None when MTA-STS is off (no record is published then)."""
    if settings.mta_sts_mode == "off":
        return None
    return records.mta_sts_policy(settings)
