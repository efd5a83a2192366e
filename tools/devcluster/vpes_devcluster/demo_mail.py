"""The demo's proof that the sample customer's server really works: a mail in, read back,
straight to the server or through the shared edge (its MX and its login proxy), as a
client on the internet reaches it: behind a load balancer that sends a PROXY header."""

from __future__ import annotations

import email.utils
import imaplib
import smtplib
import socket
import ssl
import time
import uuid
from email.message import EmailMessage

from .errors import ClusterError

# The address the demo's "internet client" claims in its PROXY header.
CLIENT = "203.0.113.25"


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's bootstrap certificate is self-signed
    return ctx


def _proxied(host: str, port: int, timeout: float | None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout)
    sock.sendall(f"PROXY TCP4 {CLIENT} {host} 40000 {port}\r\n".encode())
    return sock


class _ProxiedSMTP(smtplib.SMTP):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _proxied(host, port, timeout)


class _ProxiedIMAP(imaplib.IMAP4):
    def _create_socket(self, timeout: float | None) -> socket.socket:
        return _proxied(self.host, self.port, timeout)


def _imap(host: str, proxied: bool) -> imaplib.IMAP4:
    if not proxied:
        return imaplib.IMAP4_SSL(host, 993, ssl_context=_tls(), timeout=15)
    imap = _ProxiedIMAP(host, 143, timeout=15)
    imap.starttls(ssl_context=_tls())
    return imap


def round_trip(
    host: str,
    address: str,
    password: str,
    timeout: float = 60,
    *,
    imap_host: str = "",
    proxied: bool = False,
) -> str:
    """Send one message to `address` over SMTP (port 25 of `host`) and find it over IMAP
    (993 of `imap_host`, default `host`). `proxied`: both through the edge, whose
    public ports take a PROXY header first (IMAP then on 143 with STARTTLS)."""
    domain = address.split("@", 1)[1]
    subject = f"hello from the vpes demo {uuid.uuid4().hex[:8]}"
    # As a mail server would send it (a Date, a Message-ID, its own name in EHLO):
    # the edge's Rspamd files a message without them into Junk.
    msg = EmailMessage()
    msg["From"] = f"demo@{domain}"
    msg["To"] = address
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = email.utils.make_msgid(domain="mail.example.net")
    msg.set_content("This message went in through SMTP and came back out through IMAP.\n")
    smtp_class = _ProxiedSMTP if proxied else smtplib.SMTP
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with smtp_class(host, 25, timeout=15, local_hostname="mail.example.net") as smtp:
                smtp.send_message(msg)
            break
        except (OSError, smtplib.SMTPException) as e:
            last = e
            time.sleep(1)
    else:
        raise ClusterError(f"SMTP to {host}:25 failed: {last}")
    while time.monotonic() < deadline:
        try:
            with _imap(imap_host or host, proxied) as imap:
                imap.login(address, password)
                imap.select("INBOX", readonly=True)
                _, found = imap.search(None, "SUBJECT", f'"{subject}"')
                if found and found[0].split():
                    return subject
        except (OSError, imaplib.IMAP4.error) as e:
            last = e
        time.sleep(1)
    raise ClusterError(f"the message did not reach {address} over IMAP: {last}")


def fetch(
    imap_host: str, address: str, password: str, subject: str, folder: str = "INBOX"
) -> bytes:
    """The whole message with `subject` in `address`'s `folder` (through the login
    proxy), or b"" while it is not there."""
    with _imap(imap_host, True) as imap:
        imap.login(address, password)
        imap.select(folder, readonly=True)
        _, found = imap.search(None, "SUBJECT", f'"{subject}"')
        numbers = found[0].split() if found and found[0] else []
        if not numbers:
            return b""
        _, data = imap.fetch(numbers[-1], "(BODY.PEEK[])")
    parts = [item[1] for item in data if isinstance(item, tuple)]
    return bytes(parts[0]) if parts else b""


def send_between(
    proxy: str,
    sender: tuple[str, str],
    recipient: tuple[str, str],
    timeout: float = 180,
) -> bytes:
    """A mail from one customer to another as their mail apps send it: submission
    (587, STARTTLS, AUTH) through the edge's login proxy to the sender's server, out
    through the outbound relay (which signs it), in through the MX, read by the
    recipient through the proxy. Returns the message as delivered."""
    from_address, (to_address, to_password) = sender[0], recipient
    subject = f"from one vpes customer to another {uuid.uuid4().hex[:8]}"
    submit(proxy, sender, to_address, subject)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            raw = fetch(proxy, to_address, to_password, subject)
            if raw:
                return raw
        except (OSError, imaplib.IMAP4.error) as e:
            last = e
        time.sleep(2)
    raise ClusterError(f"{from_address}'s mail did not reach {to_address}: {last}")


def submit(
    proxy: str, sender: tuple[str, str], to_address: str, subject: str, body: str = ""
) -> None:
    """One message from `sender` (address, password) to `to_address`, as a mail app
    sends it through the edge: submission on the login proxy's 587 (behind a PROXY
    header), STARTTLS, AUTH; the sender's own server takes it and relays it."""
    from_address, from_password = sender
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = to_address
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@{from_address.split('@', 1)[1]}>"
    msg.set_content(
        (body or "Sent through the shared edge and its relay, signed on the way out.") + "\n"
    )
    with _ProxiedSMTP(proxy, 587, timeout=30) as smtp:
        smtp.starttls(context=_tls())
        smtp.login(from_address, from_password)
        smtp.send_message(msg)


def refused(host: str, address: str, subject: str) -> str | None:
    """The edge MX's refusal of a message with `subject` to `address`, through a PROXY
    header ("554 ...": refused; None: taken)."""
    domain = address.split("@", 1)[1]
    msg = EmailMessage()
    msg["From"] = f"demo@{domain}"
    msg["To"] = address
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate()
    msg["Message-ID"] = email.utils.make_msgid(domain="mail.example.net")
    msg.set_content("Judged by the edge's antispam rules.\n")
    try:
        with _ProxiedSMTP(host, 25, timeout=15, local_hostname="mail.example.net") as smtp:
            smtp.send_message(msg)
    except smtplib.SMTPDataError as e:
        said = e.smtp_error
        return f"{e.smtp_code} {said.decode(errors='replace') if isinstance(said, bytes) else said}"
    return None
