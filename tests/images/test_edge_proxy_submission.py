"""Submission (587, 465 and the plain 20587) through the edge's login proxy: the
login's domain picks the tenant, whose Postfix relays the mail. Every tenant's
Postfix trusts XCLIENT from the edge on 587 (the operator renders it so), so
the tenant sees the client's address.
"""

from __future__ import annotations

import smtplib
import socket

import pytest

from .clients import TLS, ProxySMTP, imap_find, message, proxy_v1, unique, wait_until
from .edge import PROXY_PORTS
from .proxy_support import ALICE, BOB, ProxySetup, client_address
from .tenant import PASSWORDS

pytestmark = pytest.mark.images


def submission(host: str, port: int, src: str, sport: int) -> smtplib.SMTP:
    if port == 465:
        header = proxy_v1(src, "192.0.2.41", sport, port)

        class Wrapped(smtplib.SMTP_SSL):
            def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
                sock = socket.create_connection((host, port), timeout)
                sock.sendall(header)
                return TLS.wrap_socket(sock, server_hostname=host)

        return Wrapped(host, port, context=TLS, timeout=20)
    if port in PROXY_PORTS:
        smtp: smtplib.SMTP = ProxySMTP(host, port, proxy_v1(src, "192.0.2.41", sport, port), 20)
    else:
        smtp = smtplib.SMTP(host, port, timeout=20)
    smtp.starttls(context=TLS)
    return smtp


@pytest.mark.parametrize(
    ("port", "user", "tenant"), [(587, ALICE, "a"), (465, BOB, "b"), (20587, BOB, "b")]
)
def test_submission_relays_through_the_tenant(
    proxy: ProxySetup, port: int, user: str, tenant: str
) -> None:
    t = proxy.a if tenant == "a" else proxy.b
    subject = unique(f"submission {port}")
    src, sport = client_address()
    with submission(proxy.host, port, src, sport) as smtp:
        smtp.login(user, PASSWORDS[user])
        refused = smtp.sendmail(user, [BOB], message(user, BOB, subject))
    assert refused == {}
    # Delivered by the tenant the login's domain is routed to.
    data = wait_until(
        lambda: imap_find(t.host, BOB, PASSWORDS[BOB], subject), what=f"{subject!r} at {tenant}"
    ).decode()
    received = data.split("\r\n\r\n", 1)[0]
    assert f"(Authenticated sender: {user})" in received or "ESMTPSA" in received, received
    if tenant == "b" and port in PROXY_PORTS:
        # Tenant B trusts XCLIENT from the edge: its Postfix saw the client.
        assert f"[{src}]" in received, received


@pytest.mark.xfail(
    strict=True,
    reason="Dovecot's submission proxy passes the tenant Postfix's 535 text on as it is",
)
def test_submission_wrong_password_and_unknown_domain_look_the_same(proxy: ProxySetup) -> None:
    replies = []
    for user in (ALICE, "alice@unknown.example"):
        with smtplib.SMTP(proxy.host, 20587, timeout=20) as smtp:
            smtp.starttls(context=TLS)
            with pytest.raises(smtplib.SMTPAuthenticationError) as failed:
                smtp.login(user, "not-the-password")
            replies.append((failed.value.smtp_code, failed.value.smtp_error))
    assert replies[0] == replies[1], replies
