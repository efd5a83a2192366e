"""What the edge's e2e modules share: mail from "outside" through a load balancer
that speaks the PROXY protocol, reading an INBOX, and the edge's antispam rules moved
by a FleetUpgrade (rules, the upgrade, its end)."""

from __future__ import annotations

import email.utils
import imaplib
import smtplib
import socket
import uuid
from email.message import EmailMessage
from typing import Any

from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_operator.models.fleet import TERMINAL

from tests.e2e import support
from tests.integration.operator_support import wait_for

CLIENT = "203.0.113.7"  # the client's public address, as the load balancer saw it
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


class ProxiedSMTP(smtplib.SMTP):
    """SMTP through a load balancer that speaks the PROXY protocol (v1): the header
    names the client's address before the SMTP dialogue starts."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout)
        sock.sendall(f"PROXY TCP4 {CLIENT} {host} 40000 {port}\r\n".encode())
        return sock


def message(to: str, subject: str, body: str = "") -> EmailMessage:
    """From a sender of the recipient's own domain: nothing resolves on this closed
    network, and the tenant checks a foreign sender's domain in DNS (450 otherwise)."""
    msg = EmailMessage()
    msg["From"] = "carol@" + to.split("@", 1)[1]
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@sender.example>"
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg.set_content((body or subject) + "\n")
    return msg


def deliver(mx: str, msg: EmailMessage) -> None:
    with ProxiedSMTP(mx, 25, timeout=60) as smtp:
        smtp.ehlo("mail.sender.example")
        smtp.send_message(msg)


def rcpt(mx: str, to: str) -> tuple[int, bytes]:
    """The MX's answer to RCPT TO `to` (no mail is sent)."""
    with ProxiedSMTP(mx, 25, timeout=60) as smtp:
        smtp.ehlo("mail.sender.example")
        smtp.mail("carol@" + to.split("@", 1)[1])
        return smtp.rcpt(to)


def inbox(host: str, address: str) -> dict[str, bytes]:
    """Subject → the whole message, of every message in the INBOX."""
    imap = imaplib.IMAP4_SSL(host, 993, ssl_context=support.tls(), timeout=30)
    try:
        imap.login(address, support.PASSWORD)
        imap.select("INBOX", readonly=True)
        _, data = imap.fetch("1:*", "(BODY.PEEK[])")
    finally:
        imap.logout()
    found = {}
    for item in data:
        if isinstance(item, tuple):
            raw = item[1]
            head = raw.split(b"\r\n\r\n", 1)[0]
            subject = next(
                (
                    ln[8:].strip().decode()
                    for ln in head.split(b"\r\n")
                    if ln.startswith(b"Subject:")
                ),
                "",
            )
            found[subject] = raw
    return found


def rules_config_map(api: Kube, namespace: str, name: str, data: dict[str, str]) -> None:
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }
    )


def rules_upgrade(api: Kube, config_map: str, timeout: int) -> str:
    """A FleetUpgrade of the edge's antispam to the rules of `config_map`; its name."""
    name = f"fup-rules-{uuid.uuid4().hex[:6]}"
    api.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "FleetUpgrade",
            "metadata": {"name": name},
            "spec": {"antispam": {"rulesConfigMap": config_map}, "healthTimeoutSeconds": timeout},
        }
    )
    return name


def upgrade_ended(api: Kube, name: str, timeout: float) -> dict[str, Any]:
    """The FleetUpgrade's status once its phase is final."""

    def final() -> dict[str, Any] | None:
        obj = api.get(API_VERSION, "FleetUpgrade", None, name)
        status = (obj or {}).get("status") or {}
        return status if status.get("phase") in TERMINAL else None

    return wait_for(final, f"FleetUpgrade {name} to end", timeout=timeout, interval=3)
