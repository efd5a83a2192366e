"""The shared edge's inbound MX (images/edge, ``vpes-edge mx``) under podman:
mail for hosted domains' known recipients goes through to the tenant, nothing
else gets in, the client's real address comes from the PROXY header, and the
operator's maps change (or fail to) without a restart.

The edge routes the conftest tenant's domains to that tenant's own address on
the podman network (``smtp:[<tenant ip>]:25``), as the operator routes a
domain to the tenant's Service.
"""

from __future__ import annotations

import datetime as dt
import smtplib
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from pathlib import Path
from typing import BinaryIO

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .clients import TLS, ProxySMTP, message, proxy_v1, proxy_v2, raw_greeting, unique, wait_until
from .conftest import Running, host_address
from .edge import MAPS_VERSION_FILE, Edge, EdgeMaps, EdgeUnderTest, map_text
from .tenant import container_address, podman
from .test_access import RELAY_TRICKS
from .test_delivery import find

pytestmark = pytest.mark.images

HOSTNAME = "mx.edge.test"
SIZE_LIMIT = 2 * 1024 * 1024
INTERVAL = 2  # vpes-edge's default VPES_MAPS_INTERVAL
ALICE, BOB = "alice@example.org", "bob@example.net"
SUSPENDED = "suspended.example"
FRESH = "fresh.example"
# Port 25 clients, as the load balancer's PROXY header names them. postscreen
# holds each new address for its pregreet test (6 s) once, then remembers it.
CLIENT = "198.51.100.25"


def maps_for(tenant_ip: str, version: str) -> dict[str, str]:
    """The operator's maps: the conftest tenant's two domains, and a suspended
    server's domain routed nowhere reachable."""
    route = f"smtp:[{tenant_ip}]:25"
    return {
        "domains": map_text(
            {"example.org": "customer/tenant", "example.net": "customer/tenant", SUSPENDED: "s/s"}
        ),
        "recipients": map_text(
            {
                ALICE: "OK",
                BOB: "OK",
                "@example.net": "OK",  # the tenant's catch-all
                f"someone@{SUSPENDED}": "OK",
            }
        ),
        "transport": map_text(
            {"example.org": route, "example.net": route, SUSPENDED: "smtp:[192.0.2.1]:25"}
        ),
        "access": map_text(
            {SUSPENDED: f"450 4.7.1 {SUSPENDED}: this mail server is suspended, try again later"}
        ),
        "antispam": map_text({"example.org": "standard", "example.net": "off"}),
        "proxy": "",
        "version": f"{version}\n",
    }


@dataclass
class RunningEdge(EdgeUnderTest):
    """The module's edge MX, routing the conftest tenant's domains to its address."""

    tenant_ip: str

    def base_maps(self, version: str) -> dict[str, str]:
        return maps_for(self.tenant_ip, version)


def start_edge(
    image: str,
    root: Path,
    host: str,
    files: dict[str, str],
    env: dict[str, str],
    tls_dir: Path | None = None,
) -> Edge:
    maps = EdgeMaps(root / "maps")
    maps.write(files)
    return Edge(image, host, maps, env={"VPES_HOSTNAME": HOSTNAME, **env}, tls_dir=tls_dir)


@pytest.fixture(scope="module")
def edge(
    edge_image: str, tenant: Running, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningEdge]:
    tenant_ip = container_address(tenant.tenant.name)
    version = "base-0"
    box = start_edge(
        edge_image,
        tmp_path_factory.mktemp("edge"),
        host_address(31),
        maps_for(tenant_ip, version),
        {"VPES_MESSAGE_SIZE_LIMIT": str(SIZE_LIMIT)},
    )
    try:
        box.start()
        box.wait_ready()
        box.wait_version(version)
        yield RunningEdge(box, version, tenant_ip)
    finally:
        box.remove()


def connect(host: str, port: int, client: str = CLIENT) -> smtplib.SMTP:
    """Port 25 behind a PROXY v1 header claiming ``client``; 2525 without one."""
    if port == 25:
        return ProxySMTP(host, 25, proxy_v1(client, "192.0.2.25", 40025, 25), timeout=20)
    return smtplib.SMTP(host, port, timeout=20)


def rcpt(host: str, port: int, address: str, client: str = CLIENT) -> tuple[int, bytes]:
    with connect(host, port, client) as smtp:
        smtp.ehlo("client.example")
        code, text = smtp.mail("carol@example.org")
        assert code == 250, text
        return smtp.docmd(f"RCPT TO:<{address}>")


def send(host: str, port: int, rcpts: list[str], data: bytes) -> None:
    with connect(host, port) as smtp:
        smtp.ehlo("client.example")
        assert smtp.sendmail("carol@example.org", rcpts, data) == {}


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
        greeting = _reply(replies)
        assert greeting.startswith(b"220-") and b"\r\n250 " in greeting, greeting
        sock.sendall(b"MAIL FROM:<carol@example.org>\r\n")
        assert _reply(replies).startswith(b"250")
        sock.sendall(f"RCPT TO:<{ALICE}>\r\n".encode())
        refused = _reply(replies)
    assert refused.startswith(b"550"), refused
    logs = edge.edge.logs()
    assert any("PREGREET" in x and f"[{client}]" in x for x in logs.splitlines()), logs


def _reply(lines: BinaryIO) -> bytes:
    """One SMTP reply, its lines joined (the last has a space after the code)."""
    out = b""
    while True:
        line = lines.readline()
        if not line:
            raise ConnectionError(f"closed after {out!r}")
        out += line
        if line[3:4] != b"-":
            return out


# --- maps -------------------------------------------------------------------------


def test_maps_change_is_live_without_restart(edge: RunningEdge) -> None:
    master = edge.edge.master_pid()
    assert rcpt(edge.host, 2525, f"someone@{FRESH}")[0] // 100 == 5
    assert rcpt(edge.host, 2525, ALICE)[0] == 250
    files = maps_for(edge.tenant_ip, "v-fresh")
    files["domains"] += f"{FRESH} new/server\n"
    files["recipients"] = files["recipients"].replace(f"{ALICE} OK\n", "")
    files["recipients"] += f"someone@{FRESH} OK\n"
    files["transport"] += f"{FRESH} smtp:[{edge.tenant_ip}]:25\n"
    try:
        start = time.monotonic()
        edge.write_maps(files)
        wait_until(
            lambda: rcpt(edge.host, 2525, f"someone@{FRESH}")[0] == 250,
            timeout=10,
            what=f"someone@{FRESH} accepted",
        )
        took = time.monotonic() - start
        assert rcpt(edge.host, 2525, ALICE)[0] == 550  # removed from the recipients
        assert edge.edge.read(MAPS_VERSION_FILE) == "v-fresh"
        assert "maps version v-fresh loaded" in edge.edge.logs()
        assert edge.edge.master_pid() == master  # reloaded, not restarted
        assert took < 3 * INTERVAL + 2, took
    finally:
        edge.restore()
    assert rcpt(edge.host, 2525, ALICE)[0] == 250


BROKEN = {
    "line without a value": ("transport", lambda text: text + f"{FRESH}\n"),
    "file missing": ("access", None),
}


@pytest.mark.parametrize(("bad", "change"), BROKEN.values(), ids=BROKEN.keys())
def test_broken_map_keeps_the_last_good_maps(edge: RunningEdge, bad: str, change: object) -> None:
    good = edge.version
    master = edge.edge.master_pid()
    version = f"broken-{uuid.uuid4().hex[:8]}"
    files = maps_for(edge.tenant_ip, version)
    files["domains"] += f"{FRESH} new/server\n"
    files["recipients"] += f"someone@{FRESH} OK\n"
    if change is None:
        del files[bad]
    else:
        files[bad] = change(files[bad])  # type: ignore[operator]
    line = f"maps version {version} not loaded"
    try:
        edge.write_maps(files)
        wait_until(lambda: line in edge.edge.logs(), timeout=10, what="the error line")
        error = next(x for x in edge.edge.logs().splitlines() if line in x)
        assert f"): {bad}: " in error, error  # names the file
        assert f"version {good}, stay live" in error, error
        # The previous maps serve on: fresh.example is not taken, alice is.
        assert rcpt(edge.host, 2525, f"someone@{FRESH}")[0] // 100 == 5
        assert rcpt(edge.host, 2525, ALICE)[0] == 250
        assert edge.edge.read(MAPS_VERSION_FILE) == good
        assert edge.edge.master_pid() == master
        time.sleep(3 * INTERVAL)  # several looks at the same broken maps...
        assert edge.edge.logs().count(line) == 1  # ...and one line about them
    finally:
        edge.restore()


# --- start and stop ---------------------------------------------------------------


def self_signed(directory: Path, name: str) -> None:
    """tls.crt and tls.key for ``name``, as a Secret volume holds them."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    directory.mkdir()
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for f in directory.iterdir():
        f.chmod(0o400)


def test_settings_from_the_environment_and_mounts_then_sigterm(
    edge_image: str, edge: RunningEdge, tmp_path: Path
) -> None:
    self_signed(tmp_path / "tls", "mounted.edge.test")
    box = start_edge(
        edge_image,
        tmp_path,
        host_address(32),
        maps_for(edge.tenant_ip, "settings"),
        {
            "VPES_DNSBL_SITES": "zen.spamhaus.org*3 bl.spamcop.net*2",
            "VPES_RELAYHOST": "[relay.vpes.svc]:25",
        },
        tls_dir=tmp_path / "tls",
    )
    try:
        box.start()
        box.wait_ready()
        with smtplib.SMTP(box.host, 2525, timeout=30) as smtp:
            smtp.starttls(context=TLS)
            assert isinstance(smtp.sock, ssl.SSLSocket)
            der = smtp.sock.getpeercert(binary_form=True)
        assert der is not None  # the mounted certificate, not a self-signed one
        cert = x509.load_der_x509_certificate(der)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == "mounted.edge.test"
        postconf = podman(
            "exec", box.name, "postconf", "-h", "postscreen_dnsbl_sites", "relayhost"
        ).stdout.splitlines()
        assert postconf == ["zen.spamhaus.org*3 bl.spamcop.net*2", "[relay.vpes.svc]:25"]
        logs = box.stop()
        assert "SIGTERM received: stopping Postfix" in logs
        assert "vpes-edge: stopped" in logs
    finally:
        box.remove()


def test_unreachable_milter_tempfails(edge_image: str, edge: RunningEdge, tmp_path: Path) -> None:
    # Nothing listens there: mail must wait (4xx), never pass unchecked.
    milter = "inet:127.0.0.1:11332"
    box = start_edge(
        edge_image,
        tmp_path,
        host_address(32),
        maps_for(edge.tenant_ip, "milter"),
        {"VPES_MILTER": milter},
    )
    try:
        box.start()
        box.wait_ready()
        with smtplib.SMTP(box.host, 2525, timeout=30) as smtp:
            smtp.ehlo("client.example")
            code, text = smtp.mail("carol@example.org")
        assert code == 451, text
        assert podman("exec", box.name, "postconf", "-h", "smtpd_milters").stdout.strip() == milter
    finally:
        box.remove()


START_ERRORS = {
    "no hostname": ({"VPES_HOSTNAME": ""}, None, "VPES_HOSTNAME is not set"),
    "bad size": ({"VPES_MESSAGE_SIZE_LIMIT": "lots"}, None, "VPES_MESSAGE_SIZE_LIMIT=lots"),
    "broken maps": ({}, "transport", "no usable maps"),
}


@pytest.mark.parametrize(("env", "broken", "says"), START_ERRORS.values(), ids=START_ERRORS.keys())
def test_start_refuses_what_cannot_work(
    edge_image: str, tmp_path: Path, env: dict[str, str], broken: str | None, says: str
) -> None:
    files = maps_for("192.0.2.1", "start")
    if broken is not None:
        files[broken] += "key-without-value\n"
    box = start_edge(edge_image, tmp_path, host_address(33), files, env)
    assert says in box.start_refused()


def test_configuration_starts_without_warnings(edge: RunningEdge) -> None:
    logs = edge.edge.logs()
    assert "vpes-edge: maps version base-0 loaded (start)" in logs
    assert "postfix check:" not in logs  # it printed nothing
    assert "overriding earlier entry" not in logs  # main.cf sets nothing twice
