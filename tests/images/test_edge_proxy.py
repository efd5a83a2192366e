"""The shared edge's login proxy (images/edge, ``vpes-edge proxy``) under podman:
IMAP, POP3 and ManageSieve logins go to the tenant their domain is routed to,
the tenant checks the password and sees the client's real address, and what
must be refused is (no password before TLS, no PROXY header on a public port,
failures that all look the same).

The proxy and its two tenants are the conftest's ``proxy`` (proxy_support.py);
submission is in test_edge_proxy_submission.py, maps and start/stop in
test_edge_proxy_maps.py.
"""

from __future__ import annotations

import contextlib
import imaplib
import poplib
import smtplib
import socket
import uuid

import pytest

from .clients import TLS, ManageSieve, proxy_v1, unique, wait_until
from .edge import PROXY_PORTS
from .proxy_support import (
    ALICE,
    AUTH_FAILED,
    BOB,
    ProxyIMAP4,
    ProxyPOP3,
    ProxyPOP3SSL,
    ProxySetup,
    client_address,
    deliver,
    imap,
    login_error,
    subjects,
)
from .tenant import PASSWORDS, podman

pytestmark = pytest.mark.images


# --- routing and logins ------------------------------------------------------------


@pytest.mark.parametrize("port", [143, 993, 20143])
def test_imap_login_reads_the_inbox_of_the_tenant_its_domain_is_routed_to(
    proxy: ProxySetup, port: int
) -> None:
    # bob@example.net has a mailbox in both tenants; example.net goes to B.
    in_a, in_b = unique("only in A"), unique("only in B")
    deliver(proxy.a, BOB, in_a)
    deliver(proxy.b, BOB, in_b)
    alice = unique("alice in A")
    deliver(proxy.a, ALICE, alice)
    with imap(proxy.host, port) as client:
        client.login(BOB, PASSWORDS[BOB])
        seen = subjects(client)
        client.logout()
    assert in_b.encode() in seen
    assert in_a.encode() not in seen
    with imap(proxy.host, port) as client:
        client.login(ALICE, PASSWORDS[ALICE])
        assert alice.encode() in subjects(client)
        client.logout()


@pytest.mark.parametrize("port", [110, 995, 20110])
def test_pop3_login(proxy: ProxySetup, port: int) -> None:
    subject = unique("pop3")
    deliver(proxy.b, BOB, subject)
    src, sport = client_address()
    header = proxy_v1(src, "192.0.2.110", sport, port) if port in PROXY_PORTS else b""
    client: poplib.POP3
    if port == 995:
        client = ProxyPOP3SSL(proxy.host, port, header)
    else:
        client = ProxyPOP3(proxy.host, port, header)
        client.stls(TLS)
    client.user(BOB)
    client.pass_(PASSWORDS[BOB])
    count, _ = client.stat()
    tops = b"".join(b"".join(client.top(i, 0)[1]) for i in range(1, count + 1))
    client.quit()
    assert subject.encode() in tops


@pytest.mark.parametrize("port", [4190, 24190])
def test_managesieve_login(proxy: ProxySetup, port: int) -> None:
    src, sport = client_address()
    if port in PROXY_PORTS:
        sock = socket.create_connection((proxy.host, port), 10)
        sock.sendall(proxy_v1(src, "192.0.2.41", sport, port))
        sieve = ManageSieve.__new__(ManageSieve)
        sieve.sock, sieve.host, sieve.buf = sock, proxy.host, b""
        sieve.capabilities = sieve.response()
    else:
        sieve = ManageSieve(proxy.host, port)
    try:
        sieve.starttls()
        name = f"proxy{uuid.uuid4().hex[:6]}"
        sieve.login(ALICE, PASSWORDS[ALICE])
        sieve.put_active(name, 'require "fileinto";\n')
        listed = b"\n".join(sieve.command("LISTSCRIPTS"))
    finally:
        sieve.close()
    assert f'"{name}" ACTIVE'.encode() in listed
    # It is in tenant A's mail volume (example.org is routed there).
    assert (
        f"{name}.sieve"
        in podman(
            "exec", proxy.a.tenant.name, "ls", "/var/mail/vpes/example.org/alice/sieve"
        ).stdout
    )


# --- what is refused -----------------------------------------------------------------


@pytest.mark.parametrize("port", [143, 20143])
def test_wrong_password_unknown_user_and_unknown_domain_look_the_same(
    proxy: ProxySetup, port: int
) -> None:
    wrong = login_error(proxy.host, port, ALICE, "not-her-password")
    nobody = login_error(proxy.host, port, "nobody@example.org", "whatever-123")
    unknown = login_error(proxy.host, port, "alice@unknown.example", "whatever-123")
    bare = login_error(proxy.host, port, "alice", "whatever-123")
    assert wrong == nobody == unknown == bare == AUTH_FAILED, (wrong, nobody, unknown, bare)


def test_no_login_before_starttls(proxy: ProxySetup) -> None:
    client = imaplib.IMAP4(proxy.host, 20143, timeout=10)
    assert "LOGINDISABLED" in client.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        client.login(ALICE, PASSWORDS[ALICE])
    client.shutdown()
    pop = poplib.POP3(proxy.host, 20110, timeout=10)
    with pytest.raises(poplib.error_proto, match="Plaintext authentication disallowed"):
        pop.user(ALICE)
    pop.close()
    with smtplib.SMTP(proxy.host, 20587, timeout=10) as smtp:
        smtp.ehlo("client.example")
        assert not smtp.has_extn("auth")
        code, _ = smtp.docmd("AUTH", "PLAIN")
        assert code // 100 == 5
    sieve = ManageSieve(proxy.host, 24190)
    try:
        with pytest.raises(RuntimeError):
            sieve.login(ALICE, PASSWORDS[ALICE])
    finally:
        sieve.close()


@pytest.mark.parametrize("port", [143, 993, 110, 4190, 587])
def test_public_port_without_proxy_header_is_refused(proxy: ProxySetup, port: int) -> None:
    with socket.create_connection((proxy.host, port), timeout=10) as sock:
        sock.sendall(b"A1 CAPABILITY\r\n")
        got = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                got += chunk
    assert b"OK" not in got and b"220" not in got, got


# --- the client's address reaches the tenant ------------------------------------------


def test_tenant_logs_the_client_address_from_the_proxy_header(proxy: ProxySetup) -> None:
    src, sport = client_address()
    client = ProxyIMAP4(proxy.host, 143, proxy_v1(src, "192.0.2.143", sport, 143))
    client.starttls(TLS)
    client.login(ALICE, PASSWORDS[ALICE])
    client.logout()
    line = wait_until(
        lambda: next(
            (
                x
                for x in proxy.a.logs().splitlines()
                if "imap-login: Info: Login:" in x and f"rip={src}," in x
            ),
            None,
        ),
        timeout=10,
        what=f"tenant A's login line with rip={src}",
    )
    assert "user=<alice@example.org>" in line
    assert f"rip={proxy.edge.ip}" not in line
    # The edge logs it too.
    assert f"rip={src}" in proxy.edge.logs()
