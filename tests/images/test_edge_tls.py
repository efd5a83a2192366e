"""The edge's certificate under podman (images/edge/tls/tls.sh): every role serves
the Secret mounted at /etc/vpes/tls (a bind-mounted directory the tests write the
way the kubelet does: new files in a new directory, then the ``..data`` link
swapped in one rename), a self-signed one until the first appears, and picks up
each new one within a few looks (VPES_TLS_POLL) with no restart: the served
certificate changes while a session opened before goes on. A pair whose key is
not the certificate's is refused with one log line and the old certificate stays;
no key material is ever logged.

The inbound MX (STARTTLS on its plain port 2525), the login proxy (STARTTLS on
IMAP's plain 20143, in front of the ``proxy`` fixture's tenants) and the outbound
relay (STARTTLS on 587) each run here with a tls directory of their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import imaplib
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from vpes_operator import crypto

from .clients import TLS, wait_until
from .conftest import host_address
from .edge import Edge, EdgeMaps, ProxyEdge
from .mx_support import maps_for as mx_maps
from .proxy_support import A_HOST, ALICE, B_HOST, BASE, ProxySetup, free_address, imap, subjects
from .proxy_support import maps_for as proxy_maps
from .relay import SMTP, Relay, shard_files
from .relay_fleet import SHARDS, ready
from .relay_fleet import maps_for as relay_maps
from .tenant import PASSWORDS, _atomic_write, build_images, container_address

pytestmark = pytest.mark.images

POLL = 1  # VPES_TLS_POLL for these edges (seconds)
# A new certificate is served within a few looks (and Postfix's or Dovecot's reload).
WITHIN = 10 * POLL + 10
MX_NAME, PROXY_NAME = "mx.edge.test", "proxy.edge.test"
REFUSED = "is not the key of the certificate in tls.crt"


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as PEM, and the SHA-256 of the certificate's DER."""

    cert: str
    key: str
    fingerprint: str


def make_pair(name: str, expired: bool = False) -> Pair:
    """The operator's own self-signed builder, valid a day (ended a day ago: `expired`)."""
    now = dt.datetime.now(dt.UTC) - (dt.timedelta(days=2) if expired else dt.timedelta())
    cert, key = crypto.self_signed_certificate([name], days=1, now=now)
    der = x509.load_pem_x509_certificate(cert.encode()).public_bytes(serialization.Encoding.DER)
    return Pair(cert, key, hashlib.sha256(der).hexdigest())


def mount(directory: Path, cert: str, key: str) -> None:
    """A new version of the Secret, as the kubelet swaps it in (``..data``)."""
    _atomic_write(directory, {"tls.crt": (cert, 0o400), "tls.key": (key, 0o400)})


def fingerprint(sock: object) -> str:
    assert isinstance(sock, ssl.SSLSocket)
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def served_by_mx(host: str) -> str:
    with smtplib.SMTP(host, 2525, timeout=20) as smtp:
        smtp.starttls(context=TLS)
        return fingerprint(smtp.sock)


def served_by_relay(host: str) -> str:
    with smtplib.SMTP(host, SMTP, timeout=20) as smtp:
        smtp.starttls(context=TLS)
        return fingerprint(smtp.sock)


def served_by_proxy(host: str) -> str:
    client = imaplib.IMAP4(host, 20143, timeout=15)
    try:
        client.starttls(TLS)
        return fingerprint(client.sock)
    finally:
        client.logout()


def wait_served(served: Callable[[str], str], host: str, pair: Pair) -> float:
    """Until ``pair`` is the certificate served; how long that took (seconds)."""
    start = time.monotonic()
    wait_until(lambda: served(host) == pair.fingerprint, WITHIN, "the new certificate served")
    return time.monotonic() - start


def assert_no_key_logged(logs: str, *pairs: Pair) -> None:
    assert "PRIVATE KEY" not in logs
    for pair in pairs:
        body = [line for line in pair.key.splitlines() if not line.startswith("-----")]
        assert not any(line in logs for line in body)


@dataclass
class TlsEdge:
    edge: Edge
    tls_dir: Path


def started(edge: Edge, tls_dir: Path) -> Iterator[TlsEdge]:
    try:
        edge.start()
        edge.wait_ready()
        yield TlsEdge(edge, tls_dir)
    finally:
        edge.remove()


@pytest.fixture(scope="module")
def mx_tls(edge_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEdge]:
    """The inbound MX with an empty tls directory: the optional Secret does not exist yet."""
    root = tmp_path_factory.mktemp("mx-tls")
    maps = EdgeMaps(root / "maps")
    maps.write(mx_maps("192.0.2.1", "tls-0"))
    tls_dir = root / "tls"
    tls_dir.mkdir()
    env = {"VPES_HOSTNAME": MX_NAME, "VPES_TLS_POLL": str(POLL)}
    yield from started(Edge(edge_image, host_address(71), maps, env=env, tls_dir=tls_dir), tls_dir)


@pytest.fixture(scope="module")
def proxy_tls(
    edge_image: str, proxy: ProxySetup, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsEdge]:
    """A second login proxy in front of the ``proxy`` fixture's tenants, its own
    certificate mounted from the start."""
    root = tmp_path_factory.mktemp("proxy-tls")
    maps = EdgeMaps(root / "maps")
    maps.write(proxy_maps(BASE, "tls-0"))
    tls_dir = root / "tls"
    first = make_pair(PROXY_NAME)
    mount(tls_dir, first.cert, first.key)
    edge = ProxyEdge(
        edge_image,
        host_address(72),
        maps,
        env={"VPES_HOSTNAME": PROXY_NAME, "VPES_TLS_POLL": str(POLL)},
        tls_dir=tls_dir,
        ip=free_address(),
        hosts=(
            (A_HOST, container_address(proxy.a.tenant.name)),
            (B_HOST, container_address(proxy.b.tenant.name)),
        ),
    )
    for running in started(edge, tls_dir):
        assert served_by_proxy(running.edge.host) == first.fingerprint
        yield running


# --- the inbound MX -----------------------------------------------------------------


def test_the_first_certificate_replaces_the_self_signed_one_without_a_restart(
    mx_tls: TlsEdge,
) -> None:
    box = mx_tls.edge
    assert "serving a self-signed certificate for mx.edge.test" in box.logs()
    master = box.master_pid()
    self_signed = served_by_mx(box.host)
    # A session opened before, past STARTTLS, on the self-signed certificate.
    with smtplib.SMTP(box.host, 2525, timeout=30) as before:
        before.ehlo("client.example")
        before.starttls(context=TLS)
        before.ehlo("client.example")
        assert fingerprint(before.sock) == self_signed
        first = make_pair(MX_NAME)
        mount(mx_tls.tls_dir, first.cert, first.key)
        took = wait_served(served_by_mx, box.host, first)
        print(f"first certificate served after {took:.1f} s")
        # The session goes on in its own smtpd.
        assert before.mail("carol@example.org")[0] == 250
        assert before.rcpt(ALICE)[0] == 250
        assert before.rset()[0] == 250
    assert box.master_pid() == master  # reloaded, not restarted
    logs = box.logs()
    assert f"certificate loaded from /etc/vpes/tls (changed): subject=CN = {MX_NAME}" in logs
    colons = ":".join(first.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
    assert f"sha256 {colons}" in logs
    assert "reloaded Postfix: new sessions get the new certificate" in logs
    assert_no_key_logged(logs, first)


def test_a_renewal_is_served_and_a_key_that_does_not_match_is_refused(mx_tls: TlsEdge) -> None:
    box = mx_tls.edge
    renewed = make_pair(MX_NAME)
    mount(mx_tls.tls_dir, renewed.cert, renewed.key)
    wait_served(served_by_mx, box.host, renewed)
    # A certificate with another pair's key: refused, said once, the renewed one stays.
    other = make_pair(MX_NAME)
    mount(mx_tls.tls_dir, other.cert, renewed.key)
    wait_until(lambda: REFUSED in box.logs(), WITHIN, "the refusal in the log")
    time.sleep(3 * POLL)  # several more looks at the same bad pair...
    logs = box.logs()
    assert logs.count(REFUSED) == 1, logs  # ...and one line about it
    assert served_by_mx(box.host) == renewed.fingerprint
    # Then a good one is taken.
    mount(mx_tls.tls_dir, other.cert, other.key)
    wait_served(served_by_mx, box.host, other)
    assert_no_key_logged(box.logs(), renewed, other)


def test_garbage_and_an_expired_certificate_are_refused(mx_tls: TlsEdge) -> None:
    box = mx_tls.edge
    good = make_pair(MX_NAME)
    mount(mx_tls.tls_dir, good.cert, good.key)
    wait_served(served_by_mx, box.host, good)
    mount(mx_tls.tls_dir, "not a certificate\n", good.key)
    wait_until(lambda: "tls.crt holds no PEM certificate" in box.logs(), WITHIN, "the refusal")
    assert served_by_mx(box.host) == good.fingerprint
    expired = make_pair(MX_NAME, expired=True)
    mount(mx_tls.tls_dir, expired.cert, expired.key)
    wait_until(lambda: "the certificate in tls.crt expired" in box.logs(), WITHIN, "the refusal")
    assert served_by_mx(box.host) == good.fingerprint


# --- the login proxy ---------------------------------------------------------------


def test_the_proxy_serves_a_renewal_and_open_sessions_go_on(proxy_tls: TlsEdge) -> None:
    """Fails both ways it was tried: with a Dovecot reload (SIGHUP) the logged-in
    session gets EOF; without the `remote` blocks the login process that already
    runs keeps serving the old certificate to new connections."""
    box = proxy_tls.edge
    master = box.master_pid()
    with imap(box.host, 20143) as session:
        session.login(ALICE, PASSWORDS[ALICE])  # proxied to tenant A
        subjects(session)
        # Another connection, past the greeting, not yet logged in.
        waiting = imaplib.IMAP4(box.host, 20143, timeout=15)
        renewed = make_pair(PROXY_NAME)
        mount(proxy_tls.tls_dir, renewed.cert, renewed.key)
        took = wait_served(served_by_proxy, box.host, renewed)
        print(f"renewed certificate served after {took:.1f} s")
        # Dovecot 2.3's login processes close proxied sessions idle for 2 s once
        # the master reloads: give it time to.
        time.sleep(5)
        waiting.starttls(TLS)
        waiting.login(ALICE, PASSWORDS[ALICE])
        assert waiting.noop()[0] == "OK"
        waiting.logout()
        assert session.noop()[0] == "OK"
        subjects(session)
        session.logout()
    assert box.master_pid() == master
    logs = box.logs()
    assert "Dovecot's config process read the new certificate" in logs
    assert_no_key_logged(logs, renewed)


def test_the_proxy_refuses_a_key_that_does_not_match(proxy_tls: TlsEdge) -> None:
    box = proxy_tls.edge
    good = make_pair(PROXY_NAME)
    mount(proxy_tls.tls_dir, good.cert, good.key)
    wait_served(served_by_proxy, box.host, good)
    other = make_pair(PROXY_NAME)
    mount(proxy_tls.tls_dir, good.cert, other.key)
    wait_until(lambda: REFUSED in box.logs(), WITHIN, "the refusal in the log")
    assert served_by_proxy(box.host) == good.fingerprint
    assert_no_key_logged(box.logs(), good, other)


# --- the outbound relay ------------------------------------------------------------


def test_the_relay_serves_a_renewal_without_a_restart(tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls"
    first = make_pair("relay.edge.test")
    mount(tls_dir, first.cert, first.key)
    box = Relay(
        build_images("edge")[0],
        build_images("rspamd")[0],
        host_address(73),
        tmp_path,
        env={"VPES_HOSTNAME": "relay.edge.test", "VPES_TLS_POLL": str(POLL)},
        volumes={str(tls_dir): "/etc/vpes/tls"},
    )
    # A fresh install's empty maps and shards: the certificate is the point.
    box.maps.write({name: "" for name in relay_maps("x")} | {"version": "tls-0\n"})
    box.write_secrets(shard_files(SHARDS, {}, {}))
    try:
        box.start(sinks=False)
        wait_until(lambda: ready(box), 60, "the relay's 587 and 9146")
        assert served_by_relay(box.host) == first.fingerprint
        master = box.read("/var/spool/postfix/pid/master.pid")
        renewed = make_pair("relay.edge.test")
        mount(tls_dir, renewed.cert, renewed.key)
        wait_served(served_by_relay, box.host, renewed)
        assert box.read("/var/spool/postfix/pid/master.pid") == master
        mount(tls_dir, renewed.cert, first.key)
        wait_until(lambda: REFUSED in box.logs(), WITHIN, "the refusal in the log")
        assert served_by_relay(box.host) == renewed.fingerprint
        assert_no_key_logged(box.logs(), first, renewed)
    finally:
        box.remove()
