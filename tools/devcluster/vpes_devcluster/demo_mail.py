"""The demo's proof that the sample customer's server really works: a mail in, read back."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
import time
import uuid
from email.message import EmailMessage

from .errors import ClusterError


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's bootstrap certificate is self-signed
    return ctx


def round_trip(host: str, address: str, password: str, timeout: float = 60) -> str:
    """Send one message to `address` over SMTP (port 25) and find it over IMAP (993)."""
    domain = address.split("@", 1)[1]
    subject = f"hello from the vpes demo {uuid.uuid4().hex[:8]}"
    msg = EmailMessage()
    msg["From"] = f"demo@{domain}"
    msg["To"] = address
    msg["Subject"] = subject
    msg.set_content("This message went in through SMTP and came back out through IMAP.\n")
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP(host, 25, timeout=15) as smtp:
                smtp.send_message(msg)
            break
        except (OSError, smtplib.SMTPException) as e:
            last = e
            time.sleep(1)
    else:
        raise ClusterError(f"SMTP to {host}:25 failed: {last}")
    while time.monotonic() < deadline:
        try:
            with imaplib.IMAP4_SSL(host, 993, ssl_context=_tls(), timeout=15) as imap:
                imap.login(address, password)
                imap.select("INBOX", readonly=True)
                _, found = imap.search(None, "SUBJECT", f'"{subject}"')
                if found and found[0].split():
                    return subject
        except (OSError, imaplib.IMAP4.error) as e:
            last = e
        time.sleep(1)
    raise ClusterError(f"the message did not reach {address} over IMAP: {last}")
