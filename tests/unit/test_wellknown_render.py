"""What vpes-web and the panel tell mail clients, checked against the DNS records made
from the same settings: hosts and ports, the MTA-STS policy and its id, the Apple
profile (and no password in it)."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET

import pytest
from vpes_operator.dns import records
from vpes_operator.settings import OperatorSettings
from vpes_panel.wellknown import mobileconfig, render
from vpes_panel.wellknown.autodiscover import OUTLOOK_SCHEMA

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings(
    imap_host="imap.edge.example",
    smtp_host="submit.edge.example.",  # a trailing dot is not part of what clients get
    mx_host="mx.edge.example",
    edge_web_host="web.edge.example",
    mta_sts_mode="enforce",
    mta_sts_max_age=86400,
)
AD = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
OL = "{" + OUTLOOK_SCHEMA + "}"


def srv_targets(settings: OperatorSettings) -> dict[str, tuple[int, str]]:
    """SRV label -> (port, host) as the DNS records publish them."""
    out = {}
    for r in records.domain_records("example.org", settings, {}):
        if r.type == "SRV":
            _prio, _weight, port, target = r.value.split()
            out[r.name.split(".")[0].lstrip("_")] = (int(port), target.rstrip("."))
    return out


def test_client_services_are_what_the_srv_records_say() -> None:
    services = records.client_services(SETTINGS)
    assert {s.service: (s.port, s.host) for s in services} == srv_targets(SETTINGS)
    assert [s.protocol for s in services] == ["smtp", "imap", "pop3"]
    assert records.client_service(SETTINGS, "smtp").host == "submit.edge.example"


def test_autoconfig_lists_the_srv_hosts_and_ports() -> None:
    root = ET.fromstring(render.autoconfig(SETTINGS, "example.org"))
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == "example.org"
    assert provider.findtext("domain") == "example.org"
    srv = srv_targets(SETTINGS)
    got = {}
    for server in [*provider.findall("incomingServer"), *provider.findall("outgoingServer")]:
        got[server.get("type")] = (int(server.findtext("port") or 0), server.findtext("hostname"))
        assert server.findtext("socketType") == "SSL"
        assert server.findtext("username") == "%EMAILADDRESS%"
        assert server.findtext("authentication") == "password-cleartext"
    assert got == {"imap": srv["imaps"], "pop3": srv["pop3s"], "smtp": srv["submissions"]}
    # IMAP is offered before POP3.
    assert [s.get("type") for s in provider.findall("incomingServer")] == ["imap", "pop3"]


def test_autodiscover_answers_in_the_outlook_schema_with_the_address() -> None:
    root = ET.fromstring(render.autodiscover(SETTINGS, "ann@example.org"))
    assert root.tag == AD + "Autodiscover"
    account = root.find(f"{OL}Response/{OL}Account")
    assert account is not None
    assert account.findtext(OL + "AccountType") == "email"
    assert account.findtext(OL + "Action") == "settings"
    srv = srv_targets(SETTINGS)
    protocols = {
        p.findtext(OL + "Type"): (int(p.findtext(OL + "Port") or 0), p.findtext(OL + "Server"))
        for p in account.findall(OL + "Protocol")
    }
    assert protocols == {"IMAP": srv["imaps"], "SMTP": srv["submissions"]}
    for p in account.findall(OL + "Protocol"):
        assert p.findtext(OL + "LoginName") == "ann@example.org"
        assert p.findtext(OL + "SSL") == "on" and p.findtext(OL + "Encryption") == "SSL"


def test_autodiscover_escapes_what_the_request_gave() -> None:
    odd = "a<b&\"c'@example.org"
    root = ET.fromstring(render.autodiscover(SETTINGS, odd))
    names = {p.text for p in root.iter(OL + "LoginName")}
    assert names == {odd}


def test_autodiscover_without_an_address_names_no_login() -> None:
    root = ET.fromstring(render.autodiscover(SETTINGS, None))
    assert list(root.iter(OL + "LoginName")) == []
    assert len(list(root.iter(OL + "Protocol"))) == 2


@pytest.mark.parametrize("mode", ["enforce", "testing", "none"])
def test_the_mta_sts_policy_is_the_one_the_txt_id_hashes(mode: str) -> None:
    settings = SETTINGS.model_copy(update={"mta_sts_mode": mode})
    body = render.mta_sts(settings)
    assert body == records.mta_sts_policy(settings)
    assert f"mode: {mode}\r\n" in body and "mx: mx.edge.example\r\n" in body
    [txt] = [
        r for r in records.domain_records("example.org", settings, {}) if r.kind == records.MTA_STS
    ]
    assert txt.value == f"v=STSv1; id={records.mta_sts_id(settings)}"
    # The id changes exactly when the policy served changes.
    other = settings.model_copy(update={"mta_sts_max_age": 172800})
    assert render.mta_sts(other) != body
    assert records.mta_sts_id(other) != records.mta_sts_id(settings)


def test_no_policy_when_mta_sts_is_off() -> None:
    off = SETTINGS.model_copy(update={"mta_sts_mode": "off"})
    assert render.mta_sts(off) is None
    assert not [r for r in records.domain_records("example.org", off, {}) if "mta-sts" in r.kind]


def test_the_apple_profile_sets_up_imap_and_smtp_without_a_password() -> None:
    raw = mobileconfig.profile(SETTINGS, "ann@example.org", "Ann <Smith> & Co")
    top = plistlib.loads(raw)
    assert top["PayloadType"] == "Configuration" and top["PayloadVersion"] == 1
    [account] = top["PayloadContent"]
    assert account["PayloadType"] == "com.apple.mail.managed"
    assert account["EmailAccountType"] == "EmailTypeIMAP"
    assert account["EmailAddress"] == "ann@example.org"
    assert account["EmailAccountName"] == "Ann <Smith> & Co"
    srv = srv_targets(SETTINGS)
    incoming = (account["IncomingMailServerPortNumber"], account["IncomingMailServerHostName"])
    outgoing = (account["OutgoingMailServerPortNumber"], account["OutgoingMailServerHostName"])
    assert incoming == srv["imaps"] and outgoing == srv["submissions"]
    assert account["IncomingMailServerUseSSL"] is True
    assert account["OutgoingMailServerUseSSL"] is True
    assert account["IncomingMailServerUsername"] == "ann@example.org"
    assert account["OutgoingMailServerUsername"] == "ann@example.org"
    keys = {k for payload in (top, account) for k in payload}
    same = "OutgoingPasswordSameAsIncomingPassword"
    assert not [k for k in keys if "Password" in k and k != same]
    # The same download twice is the same profile (installing it again replaces it);
    # another mailbox's is another.
    assert mobileconfig.profile(SETTINGS, "ann@example.org", "Ann <Smith> & Co") == raw
    again = plistlib.loads(mobileconfig.profile(SETTINGS, "bob@example.org"))
    assert again["PayloadUUID"] != top["PayloadUUID"]
    assert "EmailAccountName" not in again["PayloadContent"][0]


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("ann@example.org", "ann@example.org.mobileconfig"),
        ('a"b/c\r\n@example.org', "a_b_c__@example.org.mobileconfig"),
    ],
)
def test_the_profiles_file_name_is_safe(address: str, name: str) -> None:
    assert mobileconfig.filename(address) == name
