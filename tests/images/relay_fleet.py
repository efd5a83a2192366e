"""The fleet the relay's image tests run against (``test_edge_relay*.py``): a few
servers and their domains, the operator's maps for them, and the clients' side of
the relay (a tenant's login, a message, ``/status``, the DKIM records to verify
with)."""

from __future__ import annotations

import smtplib
import uuid
from email import message_from_string
from typing import Any

import httpx

from .clients import TLS, message
from .edge import map_text
from .relay import HTTP, SMTP, DkimKey, Relay

HOSTNAME = "relay.edge.test"
SIZE_LIMIT = 1024 * 1024
SHARDS = 4
ACME, OTHER, LIMITED, HELD, RELEASED, NEWCOMER = (
    "acme/mail",
    "other/mail",
    "lim/mail",
    "held/mail",
    "rel/mail",
    "new/mail",
)
DOMAINS = {
    "acme.example": ACME,
    "acme.example.net": ACME,
    "other.example": OTHER,
    "lim.example": LIMITED,
    "held.example": HELD,
    "rel.example": RELEASED,
}
PASSWORDS = {s: "pw-" + uuid.uuid4().hex for s in (ACME, OTHER, LIMITED, HELD, RELEASED)}
PASSWORDS[NEWCOMER] = "pw-" + uuid.uuid4().hex
LIMITS = {ACME: 100, OTHER: 100, LIMITED: 3, HELD: 100, RELEASED: 2}
HELD_REASON = "held/mail is held: sent 900 recipients this hour, limit 100"
OUTSIDE = "someone@elsewhere.test"  # not hosted: straight out (the internet sink)


def maps_for(version: str, tokens: dict[str, str] | None = None) -> dict[str, str]:
    tokens = tokens or {}
    return {
        "domains": map_text(DOMAINS),
        "recipients": "",
        "transport": "",
        "access": "",
        "antispam": "",
        "proxy": "",
        "senders": map_text({f"@{d}": s for d, s in DOMAINS.items()}),
        "limits": "".join(f"{s} {n} {tokens.get(s, '-')}\n" for s, n in LIMITS.items()),
        "held": f"{HELD} {HELD_REASON}\n",
        "version": f"{version}\n",
    }


def ready(box: Relay) -> bool:
    if not box.running():
        raise RuntimeError(f"relay exited:\n{box.logs()}")
    try:
        httpx.get(f"http://{box.host}:{HTTP}/status", timeout=2).raise_for_status()
        with smtplib.SMTP(box.host, SMTP, timeout=5) as smtp:
            return smtp.ehlo("client.example")[0] == 250
    except (OSError, httpx.HTTPError, smtplib.SMTPException):
        return False


def login(box: Relay, server: str, password: str | None = None) -> smtplib.SMTP:
    smtp = smtplib.SMTP(box.host, SMTP, timeout=30)
    smtp.ehlo("tenant.example")
    smtp.starttls(context=TLS)
    smtp.ehlo("tenant.example")
    smtp.login(server, password if password is not None else PASSWORDS[server])
    return smtp


def status(box: Relay) -> dict[str, Any]:
    reply = httpx.get(f"http://{box.host}:{HTTP}/status", timeout=10)
    reply.raise_for_status()
    result: dict[str, Any] = reply.json()
    return result


def send(box: Relay, server: str, sender: str, rcpts: list[str], subject: str) -> None:
    with login(box, server) as smtp:
        refused = smtp.sendmail(sender, rcpts, message(sender, rcpts[0], subject))
    assert refused == {}, refused


def dns_for(keys: dict[str, list[DkimKey]]) -> Any:
    records = {
        f"{k.selector}._domainkey.{k.domain}.".encode(): k.dns for ks in keys.values() for k in ks
    }

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def signatures(data: str) -> list[str]:
    return [str(h) for h in message_from_string(data).get_all("DKIM-Signature", [])]
