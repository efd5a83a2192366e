"""A tenant picks up a new certificate from its Secret without a restart: what a server
with a mail host (spec.mailHost) gets once its issued pair is copied into its Secret.

The files are written the way the operator's reconcile makes them (`credentials.gather`
keeps the issued pair for the mail host) and swapped in the way the kubelet does (the
``..data`` link); within vpes-init's watch interval IMAPS (993) and submissions (465)
serve the new certificate to new connections, Postfix's and Dovecot's masters are the
same processes, and an IMAP session logged in before the swap goes on after it.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from vpes_operator.crypto import self_signed_certificate

from .clients import TLS, imap_login, wait_until
from .conftest import Running, host_address, start_tenant
from .tenant import PASSWORDS, podman, sample_spec

pytestmark = pytest.mark.images

HOST = "mail.example.org"
ALICE = "alice@example.org"


@pytest.fixture
def own_tenant(image: str, gateway: str, tmp_path: Path) -> Iterator[Running]:
    yield from start_tenant(image, host_address(81), tmp_path, f"{gateway}/32", sink=False)


def served(host: str, port: int) -> bytes:
    """The leaf certificate (DER) a new TLS connection to `port` is given."""
    if port == 465:
        with smtplib.SMTP_SSL(host, port, context=TLS, timeout=10) as smtp:
            assert isinstance(smtp.sock, ssl.SSLSocket)
            der = smtp.sock.getpeercert(binary_form=True)
    else:
        client = imaplib.IMAP4_SSL(host, port, ssl_context=TLS, timeout=10)
        try:
            der = client.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        finally:
            client.shutdown()
    assert der is not None
    return der


def der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)


def masters(name: str) -> dict[str, str]:
    """The PIDs of Postfix's master and Dovecot's master, from the host (`podman top`)."""
    out = podman("top", name, "pid", "args").stdout.splitlines()[1:]
    found = {}
    for line in out:
        pid, _, args = line.strip().partition(" ")
        args = args.strip()
        if "postfix/sbin/master" in args or args.startswith("master"):
            found["postfix"] = pid
        elif args.startswith("dovecot") or "/dovecot " in args or args.endswith("/dovecot"):
            found.setdefault("dovecot", pid)
    assert set(found) == {"postfix", "dovecot"}, out
    return found


def test_a_new_certificate_is_served_without_a_restart_and_sessions_go_on(
    own_tenant: Running,
) -> None:
    t = own_tenant
    before = {port: served(t.host, port) for port in (993, 465)}
    assert before[993] == der(t.files.stored["tls.crt"])  # the bootstrap
    pids = masters(t.tenant.name)
    session = imap_login(t.host, ALICE, PASSWORDS[ALICE])
    assert session.select("INBOX")[0] == "OK"

    # The issued pair for the mail host, as the operator copies it into the Secret.
    cert, key = self_signed_certificate([HOST], 90, dt.datetime.now(dt.UTC))
    t.files.stored.update({"tls.crt": cert, "tls.key": key})
    spec = sample_spec().model_copy(update={"mail_host": HOST})
    t.files.write(spec, PASSWORDS)
    assert t.files.stored["tls.crt"] == cert, "gather kept the issued pair"

    new = der(cert)
    wait_until(lambda: served(t.host, 993) == new or None, 20, "the new certificate on 993")
    wait_until(lambda: served(t.host, 465) == new or None, 20, "the new certificate on 465")
    assert masters(t.tenant.name) == pids
    # The session logged in before the swap goes on.
    assert session.noop()[0] == "OK"
    assert session.select("INBOX")[0] == "OK"
    assert session.sock.getpeercert(binary_form=True) == before[993]  # type: ignore[attr-defined]
    session.logout()
    assert "reloading Postfix and Dovecot" in t.logs()
    assert key not in t.logs()
