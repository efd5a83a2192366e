"""Set up your mail app, against the real API server: the account page lists the
servers and links the Apple profile; the profile is the logged-in user's, names the
same IMAP and submission hosts and ports as the SRV records the operator put in the
server's status, and holds no password; without a session there is none."""

from __future__ import annotations

import plistlib

from tests import panel_web

from . import panel_support
from .operator_support import wait_for
from .panel_support import PanelEnv

panel_env = panel_support.panel_env


def srv_records(env: PanelEnv, t: panel_support.Tenant) -> dict[str, tuple[int, str]]:
    """SRV label -> (port, target) from the operator's status.dnsRecords."""
    found = wait_for(
        lambda: [
            r
            for r in (env.server(t).get("status") or {}).get("dnsRecords") or []
            if r["type"] == "SRV"
        ],
        f"the SRV records in {t.namespace}'s status",
        90,
    )
    out = {}
    for r in found:
        _prio, _weight, port, target = r["value"].split()
        out[r["name"].split(".")[0].lstrip("_")] = (int(port), target.rstrip("."))
    return out


def test_a_user_downloads_their_own_profile_matching_the_dns_records(
    panel_env: PanelEnv,
) -> None:
    t = panel_env.customer(("owner", "bea"), extra={"dns": {"mode": "Manual"}})
    user = f"bea@{t.domain}"
    c = panel_env.login(user, t.passwords[user])
    page = c.get("/account")
    assert page.status_code == 200
    assert 'href="/account/setup.mobileconfig"' in page.text
    srv = srv_records(panel_env, t)
    for port, host in srv.values():
        assert host in page.text and f'<td data-label="Port">{port}</td>' in page.text

    r = c.get("/account/setup.mobileconfig")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-apple-aspen-config"
    assert r.headers["content-disposition"] == f'attachment; filename="{user}.mobileconfig"'
    assert r.headers["cache-control"] == "no-store"
    profile = plistlib.loads(r.content)
    [account] = profile["PayloadContent"]
    assert account["EmailAddress"] == user
    assert account["IncomingMailServerUsername"] == user
    incoming = (account["IncomingMailServerPortNumber"], account["IncomingMailServerHostName"])
    outgoing = (account["OutgoingMailServerPortNumber"], account["OutgoingMailServerHostName"])
    assert incoming == srv["imaps"] and outgoing == srv["submissions"]
    for password in t.passwords.values():
        assert password.encode() not in r.content
    assert b"Password</key>" not in r.content.replace(
        b"OutgoingPasswordSameAsIncomingPassword</key>", b""
    )


def test_no_profile_without_a_session(panel_env: PanelEnv) -> None:
    r = panel_web.client(panel_env.url).get("/account/setup.mobileconfig")
    assert r.status_code == 303 and r.headers["location"] == "/login"
