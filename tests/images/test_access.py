"""Who may do what: submission with SASL after TLS only, senders limited to owned
addresses, no open relay, PROXY protocol from the edge only, modern TLS only."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl

import pytest
from vpes_operator.render.layout import INTERNAL_SUBMISSION

from .clients import (
    TLS,
    ProxyIMAP4SSL,
    ProxySMTP,
    message,
    proxy_v1,
    proxy_v2,
    raw_greeting,
    tls_client,
    unique,
    wait_until,
)
from .conftest import Running
from .tenant import PASSWORDS, container_address
from .test_delivery import find

pytestmark = pytest.mark.images

ALICE, BOB = "alice@example.org", "bob@example.net"
OUTSIDE = "dave@elsewhere.example"


# --- submission --------------------------------------------------------------


def test_587_offers_no_auth_before_starttls(tenant: Running) -> None:
    with smtplib.SMTP(tenant.host, 587, timeout=10) as smtp:
        smtp.ehlo("laptop")
        assert "starttls" in smtp.esmtp_features
        assert "auth" not in smtp.esmtp_features
        code, text = smtp.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHg=")
        assert code == 530, text  # 5.7.0 Must issue a STARTTLS command first
        code, _ = smtp.docmd("MAIL FROM:<alice@example.org>")
        assert code == 530


def test_587_starttls_auth_and_send_out(tenant: Running) -> None:
    # The container has no DNS for the outside world, and submission refuses
    # recipients in domains that do not resolve: send to a local mailbox
    # (forwards, above, show the way out through the relay).
    subject = unique("587")
    with smtplib.SMTP(tenant.host, 587, timeout=10) as smtp:
        smtp.starttls(context=TLS)
        smtp.ehlo("laptop")
        assert "PLAIN" in smtp.esmtp_features["auth"]
        smtp.login(ALICE, PASSWORDS[ALICE])
        smtp.sendmail(ALICE, [BOB], message(ALICE, BOB, subject))
    assert find(tenant, BOB, subject)


def test_465_implicit_tls_auth_and_send(tenant: Running) -> None:
    subject = unique("465")
    with smtplib.SMTP_SSL(tenant.host, 465, context=TLS, timeout=10) as smtp:
        smtp.login(BOB, PASSWORDS[BOB])
        # An alias the mailbox owns is a fine sender too ("info" is bob's).
        smtp.sendmail("info@example.net", [ALICE], message("info@example.net", ALICE, subject))
    assert b"Return-Path: <info@example.net>" in find(tenant, ALICE, subject)


def test_submission_wrong_password_refused(tenant: Running) -> None:
    with (
        smtplib.SMTP_SSL(tenant.host, 465, context=TLS, timeout=10) as smtp,
        pytest.raises(smtplib.SMTPAuthenticationError),
    ):
        smtp.login(ALICE, "not-her-password")


def test_submission_without_auth_cannot_send(tenant: Running) -> None:
    with smtplib.SMTP(tenant.host, 587, timeout=10) as smtp:
        smtp.starttls(context=TLS)
        smtp.ehlo("laptop")
        code, _ = smtp.mail(ALICE)
        if code == 250:
            code, _ = smtp.rcpt(OUTSIDE)
    assert code // 100 == 5


@pytest.mark.parametrize(
    "sender",
    ["bob@example.net", "sales@example.org", "someone@elsewhere.example", "alice@example.net"],
)
def test_sender_must_be_an_owned_address(tenant: Running, sender: str) -> None:
    with smtplib.SMTP_SSL(tenant.host, 465, context=TLS, timeout=10) as smtp:
        smtp.login(ALICE, PASSWORDS[ALICE])
        smtp.mail(sender)
        code, text = smtp.rcpt(BOB)
    assert code == 553, text
    assert b"not owned by user" in text


# --- no open relay on port 25 -------------------------------------------------

RELAY_TRICKS = {
    "plain": "victim@elsewhere.example",
    "percent hack": "victim%elsewhere.example@example.org",
    "source route": "@example.org:victim@elsewhere.example",
    "quoted local part with @": '"victim@elsewhere.example"@example.org',
    "unqualified": "victim",
    "ip literal": "victim@[192.0.2.1]",
    "bang path": "elsewhere.example!victim@example.org",
    "bang path, quoted": '"elsewhere.example!victim"@example.org',
    "percent hack to an ip literal": "victim%[192.0.2.1]@example.org",
}


@pytest.mark.parametrize("rcpt", RELAY_TRICKS.values(), ids=RELAY_TRICKS.keys())
def test_no_open_relay(tenant: Running, rcpt: str) -> None:
    with smtplib.SMTP(tenant.host, 25, timeout=10) as smtp:
        smtp.ehlo("spammer.example")
        smtp.mail("spammer@example.org")
        code, text = smtp.docmd(f"RCPT TO:<{rcpt}>")
    assert code // 100 == 5, (code, text)


def test_no_relay_after_proxy_header_either(tenant: Running) -> None:
    header = proxy_v1("203.0.113.50", "192.0.2.10", 40000, 10025)
    with ProxySMTP(tenant.host, 10025, header) as smtp:
        smtp.ehlo("spammer.example")
        smtp.mail("spammer@example.org")
        code, _ = smtp.rcpt("victim@elsewhere.example")
    assert code // 100 == 5


# A PROXY header replaces the client's address with the one it claims: claiming
# loopback (or the edge) must not make a client trusted by Postfix.
SPOOFED = {
    "v1 127.0.0.1": proxy_v1("127.0.0.1", "127.0.0.1", 40001, 10025),
    "v2 127.0.0.1": proxy_v2("127.0.0.1", "127.0.0.1", 40002, 10025),
    "v1 ::1": proxy_v1("::1", "::1", 40003, 10025),
    "v2 ::1": proxy_v2("::1", "::1", 40004, 10025),
}
FOREIGN = ["victim@elsewhere.example", "victim@[192.0.2.1]", "victim@[IPv6:2001:db8::1]"]


@pytest.mark.parametrize("header", SPOOFED.values(), ids=SPOOFED.keys())
def test_proxy_header_claiming_loopback_cannot_relay(tenant: Running, header: bytes) -> None:
    # From a trusted source (the tests' clients are the edge): Postfix cannot
    # tell who may send a header, so what the header claims must not matter.
    with ProxySMTP(tenant.host, 10025, header) as smtp:
        smtp.ehlo("spammer.example")
        smtp.mail("spammer@example.org")
        codes = {rcpt: smtp.docmd(f"RCPT TO:<{rcpt}>") for rcpt in FOREIGN}
    assert all(code // 100 == 5 for code, _ in codes.values()), codes


# What a client inside the pod gets: Postfix's port 25 trusts no address, not
# even loopback; only the loopback-bound listener Dovecot submits Sieve
# redirects and vacation replies to (layout.INTERNAL_SUBMISSION) relays.
RCPT_IN_POD = """
import smtplib, sys
try:
    smtp = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
except ConnectionRefusedError:
    print("refused")
    raise SystemExit
smtp.ehlo("tenant")
smtp.mail("alice@example.org")
print(smtp.rcpt(sys.argv[3])[0])
smtp.quit()
"""


def test_loopback_inside_the_pod_cannot_relay_through_port_25(tenant: Running) -> None:
    for rcpt in FOREIGN:
        assert tenant.in_pod(RCPT_IN_POD, "127.0.0.1", "25", rcpt).startswith("5"), rcpt


def test_the_internal_relay_listens_on_loopback_only(tenant: Running) -> None:
    host, _, port = INTERNAL_SUBMISSION.rpartition(":")
    assert host == "127.0.0.1"
    pod_ip = container_address(tenant.tenant.name)
    assert pod_ip
    assert tenant.in_pod(RCPT_IN_POD, pod_ip, port, "victim@[192.0.2.1]") == "refused"
    assert tenant.in_pod(RCPT_IN_POD, host, port, "victim@[192.0.2.1]") == "250"


# --- PROXY protocol -------------------------------------------------------------


@pytest.mark.parametrize(("version", "make"), [("v1", proxy_v1), ("v2", proxy_v2)])
def test_smtp_proxy_protocol_keeps_the_client_address(
    tenant: Running, version: str, make: object
) -> None:
    client = "203.0.113.7" if version == "v1" else "203.0.113.8"
    header = make(client, "192.0.2.10", 41000, 10025)  # type: ignore[operator]
    subject = unique(f"proxy {version}")
    with ProxySMTP(tenant.host, 10025, header) as smtp:
        smtp.ehlo("client.example")
        smtp.sendmail("carol@example.org", [ALICE], message("c@example.org", ALICE, subject))
    wait_until(lambda: f"connect from unknown[{client}]" in tenant.logs(), what="the log line")
    assert f"[{client}]".encode() in find(tenant, ALICE, subject)  # Received: header


@pytest.mark.parametrize(("version", "make"), [("v1", proxy_v1), ("v2", proxy_v2)])
def test_imap_proxy_protocol_keeps_the_client_address(
    tenant: Running, version: str, make: object
) -> None:
    client = "203.0.113.17" if version == "v1" else "203.0.113.18"
    header = make(client, "192.0.2.10", 42000, 10993)  # type: ignore[operator]
    imap = ProxyIMAP4SSL(tenant.host, 10993, header)
    imap.login(ALICE, PASSWORDS[ALICE])
    imap.logout()
    wait_until(
        lambda: any(
            f"rip={client}" in line and "Login" in line for line in tenant.logs().splitlines()
        ),
        what="the login with the real address in the log",
    )


@pytest.mark.parametrize(("port", "what"), [(10025, b"EHLO x\r\n"), (10143, b"a LOGOUT\r\n")])
def test_proxy_port_without_header_is_refused(tenant: Running, port: int, what: bytes) -> None:
    reply = raw_greeting(tenant.host, port, what)
    assert not reply.startswith((b"220", b"* OK")), reply


@pytest.mark.parametrize(("version", "make"), [("v1", proxy_v1), ("v2", proxy_v2)])
def test_dedicated_address_imap_through_a_load_balancer_outside_the_edge(
    untrusted_tenant: Running, version: str, make: object
) -> None:
    # A plan's own load balancer is not the edge: Dovecot takes its PROXY header
    # (as Postfix does; the NetworkPolicy decides who reaches the PROXY ports), keeps
    # the client's address and trusts it for nothing: no login before TLS.
    client = "203.0.113.9" if version == "v1" else "203.0.113.10"
    header = make(client, "192.0.2.10", 43000, 10143)  # type: ignore[operator]
    reply = raw_greeting(untrusted_tenant.host, 10143, header + b"a LOGOUT\r\n")
    assert reply.startswith(b"* OK") and b"LOGINDISABLED" in reply, reply
    tls_header = make(client, "192.0.2.10", 43001, 10993)  # type: ignore[operator]
    imap = ProxyIMAP4SSL(untrusted_tenant.host, 10993, tls_header)
    imap.login(ALICE, PASSWORDS[ALICE])
    imap.logout()
    wait_until(
        lambda: any(
            f"rip={client}" in line and "Login" in line
            for line in untrusted_tenant.logs().splitlines()
        ),
        what="the login with the client's address in the log",
    )


def test_postfix_takes_proxy_headers_from_anyone_but_trusts_no_address(
    untrusted_tenant: Running,
) -> None:
    # Postfix has no list of who may send a PROXY header (smtpd and postscreen
    # alike; client restrictions only see the address the header claims): the
    # NetworkPolicy keeps others away from the PROXY ports. Here an untrusted
    # client's header claiming loopback is taken, and still cannot relay.
    header = proxy_v1("127.0.0.1", "127.0.0.1", 44000, 10025)
    with ProxySMTP(untrusted_tenant.host, 10025, header) as smtp:
        smtp.ehlo("spammer.example")
        smtp.mail("spammer@example.org")
        codes = {rcpt: smtp.docmd(f"RCPT TO:<{rcpt}>") for rcpt in FOREIGN}
    assert all(code // 100 == 5 for code, _ in codes.values()), codes
    wait_until(
        lambda: any(
            "postfix/smtp-pp/smtpd" in line and "connect from localhost[127.0.0.1]" in line
            for line in untrusted_tenant.logs().splitlines()
        ),
        what="Postfix logging the claimed address",
    )


# --- TLS ------------------------------------------------------------------------


def _handshake(host: str, port: int, ctx: ssl.SSLContext, starttls: bytes = b"") -> str:
    with socket.create_connection((host, port), timeout=10) as sock:
        if starttls:
            sock.recv(1024)
            sock.sendall(starttls)
            sock.recv(1024)
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            return str(tls.version())


TLS_PORTS = {"smtps": (465, b""), "imaps": (993, b""), "pop3s": (995, b"")}


@pytest.mark.parametrize(("port", "starttls"), TLS_PORTS.values(), ids=TLS_PORTS.keys())
def test_tls_1_1_refused_1_2_and_1_3_served(tenant: Running, port: int, starttls: bytes) -> None:
    old = tls_client(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, "DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as err:
        _handshake(tenant.host, port, old, starttls)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(err.value)  # refused by the server
    tls12 = tls_client(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    assert _handshake(tenant.host, port, tls12, starttls) == "TLSv1.2"
    assert _handshake(tenant.host, port, TLS, starttls) == "TLSv1.3"


@pytest.mark.parametrize("port", [465, 993])
def test_tls_1_2_without_forward_secrecy_refused(tenant: Running, port: int) -> None:
    weak = tls_client(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, "AES128-SHA:AES256-SHA")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _handshake(tenant.host, port, weak)


def test_smtp_starttls_on_25_is_modern(tenant: Running) -> None:
    with smtplib.SMTP(tenant.host, 25, timeout=10) as smtp:
        smtp.starttls(context=TLS)
        assert isinstance(smtp.sock, ssl.SSLSocket)
        assert smtp.sock.version() in ("TLSv1.2", "TLSv1.3")
        smtp.ehlo("mx.edge.example")
        assert "auth" not in smtp.esmtp_features  # no AUTH on the MX port


def test_imap_plaintext_login_refused_from_an_untrusted_client(untrusted_tenant: Running) -> None:
    imap = imaplib.IMAP4(untrusted_tenant.host, 143, timeout=10)
    try:
        assert "LOGINDISABLED" in imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(ALICE, PASSWORDS[ALICE])
    finally:
        imap.shutdown()
