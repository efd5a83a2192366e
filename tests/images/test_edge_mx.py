"""The shared edge's inbound MX (images/edge, ``vpes-edge mx``) under podman:
mail for hosted domains' known recipients goes through to the tenant, nothing
else gets in, and the client's real address comes from the PROXY header.

The edge is the conftest's ``edge`` (mx_support.py); its maps changes and its
start and stop are in test_edge_mx_maps.py.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from email import message_from_bytes

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from .clients import TLS, ProxySMTP, message, proxy_v1, proxy_v2, raw_greeting, unique
from .conftest import Running
from .mx_support import (
    ALICE,
    BOB,
    CLIENT,
    HOSTNAME,
    SIZE_LIMIT,
    SUSPENDED,
    RunningEdge,
    connect,
    rcpt,
    read_reply,
    send,
)
from .test_access import RELAY_TRICKS
from .test_delivery import find

pytestmark = pytest.mark.images


# --- what gets in ---------------------------------------------------------------


@pytest.mark.parametrize("port", [25, 2525])
def test_known_recipient_is_delivered_into_the_tenant(
    edge: RunningEdge, tenant: Running, port: int
) -> None:
    subject = unique(f"edge {port}")
    data = message("carol@example.org", BOB, subject)
    send(edge.host, port, [BOB], data)
    fetched = find(tenant, BOB, subject)
    assert fetched.endswith(data)
    assert f"by {HOSTNAME} (Postfix)".encode() in fetched  # it went through the edge


def test_catch_all_and_plus_addresses_are_known(edge: RunningEdge, tenant: Running) -> None:
    # "@example.net OK" in the recipients map: any address of the domain (the
    # tenant's catch-all takes it); alice+tag is alice.
    subject = unique("edge catch-all")
    send(edge.host, 2525, ["nobody-here@example.net"], message("c@example.org", "x", subject))
    assert b"Delivered-To: alice@example.org" in find(tenant, ALICE, subject)
    assert rcpt(edge.host, 2525, "alice+news@example.org")[0] == 250


@pytest.mark.parametrize("port", [25, 2525])
def test_unknown_recipient_is_refused_at_rcpt(edge: RunningEdge, port: int) -> None:
    code, text = rcpt(edge.host, port, "nobody-here@example.org")
    assert code == 550, text
    assert b"User unknown" in text
    assert rcpt(edge.host, port, ALICE)[0] == 250  # the same session, a known one


def test_suspended_server_gets_450_at_rcpt(edge: RunningEdge) -> None:
    code, text = rcpt(edge.host, 25, f"someone@{SUSPENDED}")
    assert code == 450, text
    assert b"suspended" in text
    # ...and an unknown address there is still unknown, never let in by the access map.
    assert rcpt(edge.host, 25, f"nobody@{SUSPENDED}")[0] == 550


def test_message_size_limit_and_tls_are_offered(edge: RunningEdge) -> None:
    with smtplib.SMTP(edge.host, 2525, timeout=20) as smtp:
        smtp.ehlo("client.example")
        assert smtp.esmtp_features["size"] == str(SIZE_LIMIT)
        assert "smtputf8" not in smtp.esmtp_features
        smtp.starttls(context=TLS)
        assert isinstance(smtp.sock, ssl.SSLSocket)
        der = smtp.sock.getpeercert(binary_form=True)
        assert der is not None
        smtp.ehlo("client.example")
        code, _ = smtp.docmd(f"MAIL FROM:<carol@example.org> SIZE={SIZE_LIMIT + 1}")
    assert code == 552
    # No certificate mounted: a self-signed one made at start, for VPES_HOSTNAME.
    cert = x509.load_der_x509_certificate(der)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == HOSTNAME


# --- what does not --------------------------------------------------------------

# The client on 25 claims an outside address, then loopback (the edge trusts
# no address: a header claiming 127.0.0.1 must not relay).
CLIENTS = {"25": (25, CLIENT), "25 claiming loopback": (25, "127.0.0.1"), "2525": (2525, "")}


@pytest.mark.parametrize("rcpt_to", RELAY_TRICKS.values(), ids=RELAY_TRICKS.keys())
@pytest.mark.parametrize(("port", "client"), CLIENTS.values(), ids=CLIENTS.keys())
def test_no_open_relay(edge: RunningEdge, port: int, client: str, rcpt_to: str) -> None:
    code, text = rcpt(edge.host, port, rcpt_to, client or CLIENT)
    assert code // 100 == 5, (code, text)


@pytest.mark.parametrize(("version", "make"), [("v1", proxy_v1), ("v2", proxy_v2)])
def test_proxy_header_address_is_in_the_received_header(
    edge: RunningEdge, tenant: Running, version: str, make: object
) -> None:
    client = "203.0.113.71" if version == "v1" else "203.0.113.72"
    header = make(client, "192.0.2.25", 41000, 25)  # type: ignore[operator]
    subject = unique(f"edge proxy {version}")
    with ProxySMTP(edge.host, 25, header, timeout=20) as smtp:
        smtp.ehlo("client.example")
        smtp.sendmail("carol@example.org", [ALICE], message("c@example.org", ALICE, subject))
    fetched = find(tenant, ALICE, subject)
    received = [str(h) for h in message_from_bytes(fetched).get_all("Received", [])]
    ours = [h for h in received if f"by {HOSTNAME}" in h]
    assert len(ours) == 1, received
    assert f"[{client}]" in ours[0], ours[0]


@pytest.mark.parametrize("first", [b"", b"EHLO client.example\r\n"], ids=["silent", "smtp"])
def test_port_25_without_proxy_header_is_dropped(edge: RunningEdge, first: bytes) -> None:
    # postscreen says "421 4.3.2 No system resources" (or nothing) and hangs up.
    reply = raw_greeting(edge.host, 25, first)
    assert reply in (b"", b"421 4.3.2 No system resources\r\n"), reply
    # The same client with a header is served.
    with connect(edge.host, 25) as smtp:
        assert smtp.ehlo("client.example")[0] == 250


def test_pregreet_talker_is_rejected_by_postscreen(edge: RunningEdge) -> None:
    # A client that talks before the greeting (as spambots do) is kept talking
    # to postscreen alone, which refuses every recipient, even a known one.
    client = "203.0.113.99"
    with socket.create_connection((edge.host, 25), timeout=20) as sock:
        replies = sock.makefile("rb")
        sock.sendall(proxy_v1(client, "192.0.2.25", 42000, 25) + b"EHLO spambot.example\r\n")
        # postscreen's "220-" teaser, then its own reply to the EHLO (no smtpd).
        greeting = read_reply(replies)
        assert greeting.startswith(b"220-") and b"\r\n250 " in greeting, greeting
        sock.sendall(b"MAIL FROM:<carol@example.org>\r\n")
        assert read_reply(replies).startswith(b"250")
        sock.sendall(f"RCPT TO:<{ALICE}>\r\n".encode())
        refused = read_reply(replies)
    assert refused.startswith(b"550"), refused
    logs = edge.edge.logs()
    assert any("PREGREET" in x and f"[{client}]" in x for x in logs.splitlines()), logs
