"""The shared edge's outbound relay (images/edge, ``vpes-edge relay``) under
podman, with a Redis and two sinks standing for the inbound MX and the
internet (``relay.py``): only authenticated servers relay, only after TLS,
only as their own domains (or foreign ones), their mail is DKIM-signed
(dkimpy verifies RSA and Ed25519), the hourly recipient limit, holds and
releases are enforced at RCPT, Redis down defers, and the maps and the
shard Secrets change without a restart.
"""

from __future__ import annotations

import smtplib
import ssl
import time
import uuid
from collections.abc import Iterator
from email import message_from_string
from pathlib import Path
from typing import Any

import dkim
import httpx
import pytest

from .clients import TLS, message, unique, wait_until
from .conftest import host_address
from .edge import map_text
from .relay import HTTP, MX_SINK, NET_SINK, SMTP, DkimKey, Relay, dkim_key, shard_files
from .tenant import build_images, podman

pytestmark = pytest.mark.images

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


@pytest.fixture(scope="module")
def keys() -> dict[str, list[DkimKey]]:
    return {
        ACME: [
            dkim_key("acme.example", "vpes"),
            dkim_key("acme.example", "vpes-ed25519", "ed25519"),
            dkim_key("acme.example.net", "vpes"),
        ],
        OTHER: [dkim_key("other.example", "vpes")],
    }


@pytest.fixture(scope="module")
def relay(keys: dict[str, list[DkimKey]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    image = build_images("edge")[0]
    redis_image = build_images("rspamd")[0]
    box = Relay(
        image,
        redis_image,
        host_address(41),
        tmp_path_factory.mktemp("relay"),
        env={"VPES_HOSTNAME": HOSTNAME, "VPES_MESSAGE_SIZE_LIMIT": str(SIZE_LIMIT)},
    )
    box.maps.write(maps_for("base-0"))
    users = {s: p for s, p in PASSWORDS.items() if s != NEWCOMER}
    box.write_secrets(shard_files(SHARDS, users, keys))
    try:
        box.start()
        wait_until(lambda: ready(box), 60, "the relay's 587 and 9146")
        yield box
    finally:
        box.remove()


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
    records = {f"{k.selector}._domainkey.{k.domain}.".encode(): k.dns for ks in keys.values() for k in ks}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def signatures(data: str) -> list[str]:
    return [str(h) for h in message_from_string(data).get_all("DKIM-Signature", [])]


# --- what goes through ----------------------------------------------------------


@pytest.mark.parametrize(
    ("rcpt", "sink"), [(OUTSIDE, NET_SINK), ("bob@other.example", MX_SINK)], ids=["out", "hosted"]
)
def test_own_domain_is_relayed_and_signed(
    relay: Relay, keys: dict[str, list[DkimKey]], rcpt: str, sink: int
) -> None:
    subject = unique("relay own")
    send(relay, ACME, "alice@acme.example", [rcpt], subject)
    got = relay.sinks[sink].wait_for(subject)
    assert got["from"] == "alice@acme.example"
    assert got["to"] == [rcpt]
    data = got["data"].encode()
    sigs = signatures(got["data"])
    assert any("a=rsa-sha256" in s and "s=vpes;" in s.replace(" ", "") for s in sigs), sigs
    assert any("a=ed25519-sha256" in s for s in sigs), sigs
    assert len(sigs) == 2, sigs
    verifier = dkim.DKIM(data)
    for i in range(len(sigs)):
        assert verifier.verify(idx=i, dnsfunc=dns_for(keys)), (i, sigs[i])
