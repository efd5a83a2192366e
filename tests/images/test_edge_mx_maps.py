"""The shared edge's inbound MX and the operator's maps: a change is live
without a restart, a broken map keeps the last good maps; the MX takes its
settings from the environment and mounts, stops on SIGTERM, tempfails without
its milter, and refuses to start on what cannot work.

The edge is the conftest's ``edge`` (mx_support.py); what gets in and what
does not is in test_edge_mx.py.
"""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .clients import TLS, wait_until
from .conftest import host_address
from .edge import MAPS_VERSION_FILE
from .mx_support import ALICE, FRESH, INTERVAL, RunningEdge, maps_for, rcpt, start_edge
from .tenant import podman

pytestmark = pytest.mark.images


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
