"""What tests/images/test_junk.py shares: a tenant that files the edge's spam into
Junk and trains the conftest's Rspamd (``antispam``) from IMAP moves, and IMAP,
SMTP and Redis helpers to drive and watch it."""

from __future__ import annotations

import imaplib
import random
import smtplib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vpes_operator.render.layout import LEARN_SPOOL_DIR

from .clients import ProxySMTP, imap_find, imap_login, proxy_v1, wait_until
from .conftest import host_address, settings_for
from .rspamd_support import CONTROLLER, CONTROLLER_PASSWORD, Antispam, redis
from .tenant import PASSWORDS, Tenant, TenantFiles, container_address, sample_spec

ALICE, BOB = "alice@example.org", "bob@example.net"
# Small, so that a few messages overflow it (a message is then cut at 16 KiB).
SPOOL_LIMIT = "64Ki"

WORDS = [
    "invoice",
    "pharmacy",
    "crypto",
    "wallet",
    "bonus",
    "winner",
    "casino",
    "prize",
    "loan",
    "offer",
    "discount",
    "exclusive",
    "guaranteed",
    "urgent",
    "account",
    "verify",
    "password",
    "bank",
    "transfer",
    "million",
    "inheritance",
    "lottery",
    "pills",
    "watches",
    "replica",
    "shipping",
    "refund",
    "claim",
    "deadline",
    "investment",
    "profit",
    "trading",
    "bitcoin",
    "gift",
    "card",
    "voucher",
    "subscription",
    "renewal",
]


@dataclass
class Trainee:
    """The tenant under test and the Rspamd it trains."""

    tenant: Tenant
    antispam: Antispam
    rspamd_ip: str

    @property
    def host(self) -> str:
        return self.tenant.host

    def logs(self) -> str:
        return self.tenant.logs()

    def spool(self) -> list[str]:
        """The learn spool's entries (as root in the container)."""
        out = self.tenant.exec("find", LEARN_SPOOL_DIR, "-type", "f", "-printf", "%f\n")
        assert out.returncode == 0, out.stderr
        return sorted(out.stdout.split())

    def learns(self, user: str, kind: str) -> int:
        """How many messages Rspamd's Bayes learned as ``kind`` for ``user``."""
        value = redis(self.antispam.host, "HGET", f"RS{user}", f"learns_{kind}")
        return int(value or 0)

    def wait_learns(self, user: str, kind: str, count: int, timeout: float = 40) -> None:
        wait_until(
            lambda: self.learns(user, kind) >= count,
            timeout,
            f"{user}'s Bayes to have learned {count} {kind}",
        )

    def block_controller(self, blocked: bool) -> None:
        """The controller unreachable from the tenant (a prohibit route in its network
        namespace: connections fail at once), or reachable again."""
        action = "add" if blocked else "del"
        subprocess.run(
            ["nsenter", f"--net=/proc/{self.tenant.pid()}/ns/net", "ip", "route", action,
             "prohibit", f"{self.rspamd_ip}/32"],
            check=True, capture_output=True, timeout=10,
        )  # fmt: skip


def start_trainee(image: str, gateway: str, antispam: Antispam, root: Path) -> Iterator[Trainee]:
    rspamd_ip = container_address(antispam.rspamd)
    settings = settings_for(f"{gateway}/32").model_copy(
        update={
            "antispam_controller_url": f"http://{rspamd_ip}:{CONTROLLER}",
            "antispam_controller_password_file": "/read/by/the/reconcile",
            "antispam_learn_spool_limit": SPOOL_LIMIT,
        }
    )
    files = TenantFiles(root, settings, antispam_password=CONTROLLER_PASSWORD)
    files.write(sample_spec(), PASSWORDS)
    tenant = Tenant(image, host_address(17), files)
    try:
        tenant.start()
        tenant.wait_ready()
        yield Trainee(tenant, antispam, rspamd_ip)
    finally:
        tenant.remove()


# --- mail in, mail found ------------------------------------------------------------------


def text(seed: str, words: int = 80) -> str:
    """A body with enough distinct tokens for Bayes (``seed`` makes it unique)."""
    rng = random.Random(seed)
    tokens = [rng.choice(WORDS) + str(rng.randint(0, 9999)) for _ in range(words)]
    return "".join(" ".join(tokens[i : i + 8]) + "\n" for i in range(0, words, 8))


def send(host: str, port: int, rcpt: str, data: bytes) -> None:
    """Port 25 as the edge's MX hands mail in (plain, from the edge's address);
    10025 behind a PROXY header, as a dedicated address's load balancer does."""
    if port == 10025:
        smtp: smtplib.SMTP = ProxySMTP(
            host, port, proxy_v1("198.51.100.9", "192.0.2.25", 40000, 25), timeout=20
        )
    else:
        smtp = smtplib.SMTP(host, port, timeout=20)
    with smtp:
        smtp.ehlo("mx.sender.example")
        assert smtp.sendmail("carol@example.org", [rcpt], data) == {}


def find(host: str, user: str, subject: str, folder: str = "INBOX") -> bytes:
    return wait_until(
        lambda: imap_find(host, user, PASSWORDS[user], subject, folder),
        what=f"{subject!r} in {user}'s {folder}",
    )


def absent(host: str, user: str, subject: str, folder: str) -> bool:
    return imap_find(host, user, PASSWORDS[user], subject, folder) == b""


def append(host: str, user: str, folder: str, data: bytes) -> None:
    with imap_login(host, user, PASSWORDS[user]) as client:
        typ, out = client.append(f'"{folder}"', None, imaplib.Time2Internaldate(time.time()), data)
        assert typ == "OK", out


def move(host: str, user: str, subject: str, source: str, target: str) -> None:
    """IMAP MOVE (RFC 6851) of the message with ``subject`` from ``source`` to ``target``."""
    with imap_login(host, user, PASSWORDS[user]) as client:
        typ, _ = client.select(f'"{source}"')
        assert typ == "OK", source
        _, data = client.uid("SEARCH", "SUBJECT", f'"{subject}"')
        (uid,) = data[0].split()
        typ, out = client.uid("MOVE", uid.decode(), f'"{target}"')
        assert typ == "OK", out
