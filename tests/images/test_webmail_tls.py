"""The webmail verifying the certificate of the server it logs in to, as the chart
runs it once the edge has a real certificate: VPES_WEBMAIL_TLS_VERIFY=1, the name the
certificate must carry in VPES_WEBMAIL_TLS_PEER_NAME (the webmail connects by another
name: here the tenant's podman address, in the cluster the proxy's Service), and the
CA in VPES_WEBMAIL_TLS_CA (a read-only mount, as the chart's webmail.tlsCA).

The tenant stands for the login proxy (IMAP 143, submission 587 and ManageSieve 4190,
STARTTLS, as the chart's hosts); its own self-signed certificate, read from its port, is
the CA. With that CA and one of its names a mailbox logs in, sends and opens its
vacation form (ManageSieve); with a name it does not
carry, or without the CA, the login is refused and the log says the certificate was
the reason, not the password. A peer name that is no DNS name, or one given while
verification is off, stops the start with its message.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from vpes_operator.crypto import certificate_names

from .conftest import Running, host_address
from .tenant import PASSWORDS, container_address
from .webmail_support import ALICE, Browser, Webmail, WebmailSetup, logged_in, shown_messages

CA_DIR = "/etc/vpes/webmail-ca"
STORAGE_FAILED = "Connection to storage server failed."


def served_certificate(tenant: Running) -> tuple[str, str]:
    """The certificate the tenant serves (on IMAPS) and a DNS name it carries."""
    pem = ssl.get_server_certificate((tenant.host, 993), timeout=10)
    names = sorted(certificate_names(pem))
    assert names, pem
    return pem, names[-1]


@pytest.fixture(scope="module")
def tls(webmail: WebmailSetup, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A directory holding the tenant's certificate as ca.crt (as the chart's ConfigMap
    volume), and the name to verify."""
    pem, name = served_certificate(webmail.tenant)
    ca = tmp_path_factory.mktemp("webmail-ca")
    ca.chmod(0o755)
    (ca / "ca.crt").write_text(pem)
    (ca / "ca.crt").chmod(0o644)
    return ca, name


def verifying(webmail: WebmailSetup, root: Path, n: int, ca: Path | None, **env: str) -> Webmail:
    """A webmail replica verifying the tenant's certificate (not started)."""
    tenant = container_address(webmail.tenant.tenant.name)
    settings = {
        **webmail.one.env,
        "VPES_WEBMAIL_IMAP_HOST": f"tls://{tenant}:143",
        "VPES_WEBMAIL_SMTP_HOST": f"tls://{tenant}:587",
        "VPES_WEBMAIL_TLS_VERIFY": "1",
        **env,
    }
    mounts: tuple[tuple[Path, str], ...] = ()
    if ca is not None:
        settings["VPES_WEBMAIL_TLS_CA"] = f"{CA_DIR}/ca.crt"
        mounts = ((ca, CA_DIR),)
    w = Webmail(webmail.one.image, host_address(n), root, settings, mounts=mounts)
    w.write_domains(["example.org"])
    return w


def test_with_the_ca_and_the_certificates_name_a_mailbox_logs_in_and_sends(
    webmail: WebmailSetup, tls: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    ca, name = tls
    w = verifying(
        webmail, tmp_path_factory.mktemp("wm-tls"), 37, ca, VPES_WEBMAIL_TLS_PEER_NAME=name
    )
    try:
        w.start()
        w.wait_ready()
        b = logged_in(w)
        try:
            assert "set_rowcount" in b.mail_list().json()["exec"]
            # Submission (587) and ManageSieve (4190) check the same name.
            assert (
                "sent_successfully" in b.send(ALICE, "verified", "Sent over verified TLS.\n").text
            )
            page = b.get("/", {"_task": "settings", "_action": "plugin.managesieve-vacation"})
            assert "vacation_reason" in page.text, "the form: the plugin reached ManageSieve"
        finally:
            b.close()
    finally:
        w.remove()


def test_a_name_the_certificate_lacks_or_an_unknown_ca_is_refused_for_the_certificate(
    webmail: WebmailSetup, tls: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    ca, name = tls
    cases = [
        (
            "wrong name",
            38,
            ca,
            "not-this.example.net",
            "subjectAltName did not match expected name `not-this.example.net'",
        ),
        ("no CA", 39, None, name, "certificate verify failed"),
    ]
    replicas = [
        verifying(webmail, tmp_path_factory.mktemp("wm-bad"), n, c, VPES_WEBMAIL_TLS_PEER_NAME=p)
        for _, n, c, p, _ in cases
    ]
    try:
        for w in replicas:
            w.start()
        for (case, *_, said), w in zip(cases, replicas, strict=True):
            w.wait_ready()
            b = Browser(w.url)
            try:
                r = b.login(ALICE, PASSWORDS[ALICE])
                assert "_task=mail" not in str(r.url), case
                assert shown_messages(r.text) == [STORAGE_FAILED], (case, shown_messages(r.text))
            finally:
                b.close()
            logs = w.logs()
            assert said in logs and "Unable to negotiate TLS" in logs, (case, logs[-3000:])
            assert PASSWORDS[ALICE] not in logs
    finally:
        for w in replicas:
            w.remove()


@pytest.mark.parametrize(
    ("env", "said"),
    [
        (
            {"VPES_WEBMAIL_TLS_PEER_NAME": "imap example.net"},
            "VPES_WEBMAIL_TLS_PEER_NAME must be a DNS name (the name the edge's certificate "
            'carries, e.g. imap.example.net), not "imap example.net"',
        ),
        (
            {"VPES_WEBMAIL_TLS_PEER_NAME": "imap.example.net", "VPES_WEBMAIL_TLS_VERIFY": "0"},
            "VPES_WEBMAIL_TLS_PEER_NAME is set but VPES_WEBMAIL_TLS_VERIFY is 0",
        ),
    ],
)
def test_a_bad_peer_name_stops_the_start_with_its_message(
    webmail: WebmailSetup,
    tmp_path_factory: pytest.TempPathFactory,
    env: dict[str, str],
    said: str,
) -> None:
    w = verifying(webmail, tmp_path_factory.mktemp("wm-badname"), 38, None, **env)
    try:
        w.start()
        assert w.wait_exit() == 2
        assert f"vpes-webmail: error: {said}" in w.logs(), w.logs()
    finally:
        w.remove()
