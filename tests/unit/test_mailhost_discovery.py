"""Mail clients discover a server's own mail host (spec.mailHost on a plan with a
dedicated address): its domains' SRV records, vpes-web's autoconfig and autodiscover,
the hosted index they read, the panel's Apple profile and account page name it, on the
ports its LoadBalancer exposes; every other domain keeps the edge's hosts."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from starlette.testclient import TestClient
from vpes_operator.builders.meta import Owner
from vpes_operator.builders.network import public_service
from vpes_operator.dns import records
from vpes_operator.settings import OperatorSettings
from vpes_panel.routes import setup
from vpes_panel.wellknown import mobileconfig, render
from vpes_panel.wellknown.app import build_app
from vpes_panel.wellknown.autodiscover import OUTLOOK_SCHEMA
from vpes_panel.wellknown.hosted import Hosting, slim_plan, slim_server
from vpes_panel.wellknown.routes import ROUTES
from vpes_panel.wellknown.settings import WebSettings

from .hosted_support import indexed

pytestmark = pytest.mark.unit

SETTINGS = OperatorSettings(
    imap_host="imap.edge.example",
    smtp_host="submit.edge.example",
    mx_host="mx.edge.example",
    edge_web_host="web.edge.example",
)
HOST = "mail.one.example"
EDGE = {
    "submissions": (465, "submit.edge.example"),
    "imaps": (993, "imap.edge.example"),
    "pop3s": (995, "imap.edge.example"),
}
OWN = {"submissions": (465, HOST), "imaps": (993, HOST), "pop3s": (995, HOST)}
OL = "{" + OUTLOOK_SCHEMA + "}"


def srv(recs: list[records.Record], domain: str = "one.example") -> dict[str, tuple[int, str]]:
    """The mail clients' SRV records of `domain`: service -> (port, target)."""
    out = {}
    for r in recs:
        if r.type == "SRV" and r.domain == domain:
            _prio, _weight, port, target = r.value.split()
            out[r.name.split(".")[0].lstrip("_")] = (int(port), target.rstrip("."))
    return {k: v for k, v in out.items() if k in EDGE}


def exposed_ports() -> set[int]:
    """What a dedicated address's LoadBalancer Service exposes."""
    svc = public_service(Owner("acme", "tenant-a", "uid", "pro"), SETTINGS)
    return {p["port"] for p in svc["spec"]["ports"]}


# -- the SRV records (pure builder) -----------------------------------------------------


@pytest.mark.parametrize(
    ("mail_host", "dedicated", "served"),
    [
        (HOST, True, HOST),
        (HOST, False, None),  # a shared plan: clients would reach the edge, not the host
        (None, True, None),
        ("", True, None),
    ],
)
def test_which_mail_host_is_served(mail_host: str | None, dedicated: bool, served: str) -> None:
    assert records.served_mail_host(mail_host, dedicated) == served


def test_the_srv_records_name_a_served_mail_host_on_the_ports_its_address_exposes() -> None:
    recs = records.server_records(
        ["one.example", "sub.one.example"], SETTINGS, {}, mail_host=HOST, calendar=True
    )
    assert srv(recs) == OWN
    assert srv(recs, "sub.one.example") == OWN  # every domain of the server
    assert {port for port, _ in OWN.values()} <= exposed_ports()
    # Calendar and contacts stay on the edge's web name (vpes-web serves them).
    dav = [r.value for r in recs if r.kind == records.SRV_CALDAVS]
    assert dav == ["0 1 443 web.edge.example."] * 2
    # The rest of the domain's records do not change with the mail host.
    plain = records.server_records(["one.example", "sub.one.example"], SETTINGS, {}, calendar=True)
    assert [r for r in recs if r.type != "SRV"] == [r for r in plain if r.type != "SRV"]


def test_without_a_served_mail_host_the_srv_records_name_the_edge() -> None:
    assert srv(records.domain_records("one.example", SETTINGS, {})) == EDGE
    served = records.served_mail_host(HOST, False)
    assert srv(records.domain_records("one.example", SETTINGS, {}, mail_host=served)) == EDGE


def test_a_service_whose_port_the_address_does_not_expose_is_not_announced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vpes_operator.render import layout

    only = {p: n for p, n in layout.DEDICATED_PORTS.items() if p != "pop3s"}
    monkeypatch.setattr(layout, "DEDICATED_PORTS", only)
    recs = records.domain_records("one.example", SETTINGS, {}, mail_host=HOST)
    assert srv(recs) == {k: v for k, v in OWN.items() if k != "pop3s"}
    assert [s.protocol for s in records.client_services(SETTINGS, HOST)] == ["smtp", "imap"]


# -- the set-up answers (pure renderers) ------------------------------------------------


def autoconfig_servers(body: str) -> dict[str | None, tuple[int, str | None]]:
    provider = ET.fromstring(body).find("emailProvider")
    assert provider is not None
    found = [*provider.findall("incomingServer"), *provider.findall("outgoingServer")]
    return {s.get("type"): (int(s.findtext("port") or 0), s.findtext("hostname")) for s in found}


def autodiscover_servers(body: str) -> dict[str | None, tuple[int, str | None]]:
    return {
        p.findtext(OL + "Type"): (int(p.findtext(OL + "Port") or 0), p.findtext(OL + "Server"))
        for p in ET.fromstring(body).iter(OL + "Protocol")
    }


def profile_servers(raw: bytes) -> tuple[tuple[int, str], tuple[int, str]]:
    [account] = plistlib.loads(raw)["PayloadContent"]
    return (
        (account["IncomingMailServerPortNumber"], account["IncomingMailServerHostName"]),
        (account["OutgoingMailServerPortNumber"], account["OutgoingMailServerHostName"]),
    )


@pytest.mark.parametrize(("mail_host", "want"), [(HOST, OWN), (None, EDGE)])
def test_the_renderers_name_what_the_srv_records_name(
    mail_host: str | None, want: dict[str, tuple[int, str]]
) -> None:
    got = autoconfig_servers(render.autoconfig(SETTINGS, "one.example", mail_host))
    assert got == {"imap": want["imaps"], "pop3": want["pop3s"], "smtp": want["submissions"]}
    got = autodiscover_servers(render.autodiscover(SETTINGS, "ann@one.example", mail_host))
    assert got == {"IMAP": want["imaps"], "SMTP": want["submissions"]}
    raw = mobileconfig.profile(SETTINGS, "ann@one.example", "Ann", mail_host)
    assert profile_servers(raw) == (want["imaps"], want["submissions"])


def test_the_profiles_description_names_the_host_it_sets_up() -> None:
    edge = plistlib.loads(mobileconfig.profile(SETTINGS, "ann@one.example"))
    own = plistlib.loads(mobileconfig.profile(SETTINGS, "ann@one.example", mail_host=HOST))
    assert f"incoming {HOST}, outgoing {HOST}" in own["PayloadDescription"]
    assert HOST not in edge["PayloadDescription"]


# -- the hosted index -------------------------------------------------------------------


def server(name: str, plan: str, domains: list[str], mail_host: str | None = None) -> Any:
    spec: dict[str, Any] = {"domains": domains, "plan": plan}
    if mail_host:
        spec["mailHost"] = mail_host
    meta = {"name": name, "namespace": name, "creationTimestamp": "2026-01-01T00:00:00Z"}
    return {"metadata": meta, "spec": spec}


def plan(name: str, **features: bool) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"features": features, "storage": "1Gi"}}


SERVERS = [
    server("own", "pro", ["one.example", "sub.one.example"], HOST),
    server("shared", "basic", ["two.example"], "mail.two.example"),
    server("plain", "pro", ["three.example"]),
]
PLANS = [plan("pro", dedicatedAddress=True), plan("basic", calendar=True)]


def test_the_index_keeps_the_mail_host_and_the_plans_dedicated_address() -> None:
    assert slim_server(SERVERS[0])["spec"]["mailHost"] == HOST
    assert "mailHost" not in slim_server(SERVERS[2])["spec"]
    assert slim_plan(PLANS[0])["spec"] == {"features": {"calendar": None, "dedicatedAddress": True}}


def test_the_index_serves_a_mail_host_only_on_a_dedicated_plan() -> None:
    hosted = indexed(SERVERS, PLANS)
    assert hosted.hosting("one.example") == Hosting("own", "own", "pro", False, HOST)
    assert hosted.hosting("sub.one.example") == Hosting("own", "own", "pro", False, HOST)
    assert hosted.hosting("two.example") == Hosting("shared", "shared", "basic", True, None)
    assert hosted.hosting("three.example") == Hosting("plain", "plain", "pro", False, None)


def test_the_mail_host_follows_the_plan_and_the_server() -> None:
    hosted = indexed(SERVERS, PLANS)
    hosted.plans.event("MODIFIED", plan("pro"))  # the plan stops selling the address
    assert hosted.refresh()
    assert hosted.hosting("one.example") == Hosting("own", "own", "pro", False, None)
    hosted.plans.event("MODIFIED", plan("pro", dedicatedAddress=True))
    hosted.servers.event("MODIFIED", server("own", "pro", ["one.example"], "one.example"))
    assert hosted.refresh()
    found = hosted.hosting("one.example")
    assert found is not None and found.mail_host == "one.example"
    hosted.servers.event("MODIFIED", server("own", "pro", ["one.example"]))
    assert hosted.refresh()
    found = hosted.hosting("one.example")
    assert found is not None and found.mail_host is None


# -- vpes-web, end to end in process ----------------------------------------------------


@pytest.fixture
def web() -> TestClient:
    return TestClient(build_app(WebSettings(mail=SETTINGS), indexed(SERVERS, PLANS), ROUTES))


@pytest.mark.parametrize(
    ("domain", "want"),
    [("one.example", OWN), ("sub.one.example", OWN), ("two.example", EDGE)],
)
def test_vpes_web_answers_with_the_domains_mail_host(
    web: TestClient, domain: str, want: dict[str, tuple[int, str]]
) -> None:
    r = web.get("/mail/config-v1.1.xml", headers={"host": f"autoconfig.{domain}"})
    assert r.status_code == 200, r.text
    assert autoconfig_servers(r.text)["imap"] == want["imaps"]
    r = web.get(
        "/.well-known/autoconfig/mail/config-v1.1.xml",
        headers={"host": "web.edge.example"},
        params={"emailaddress": f"ann@{domain}"},
    )
    assert autoconfig_servers(r.text)["smtp"] == want["submissions"]
    r = web.get(
        "/autodiscover/autodiscover.xml",
        headers={"host": f"autodiscover.{domain}"},
        params={"emailaddress": f"ann@{domain}"},
    )
    assert r.status_code == 200, r.text
    assert autodiscover_servers(r.text) == {"IMAP": want["imaps"], "SMTP": want["submissions"]}


# -- the panel --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "plan_spec", "want"),
    [
        ({"mailHost": HOST}, {"features": {"dedicatedAddress": True}}, HOST),
        ({"mailHost": HOST}, {"features": {"dedicatedAddress": False}}, None),
        ({"mailHost": HOST}, {}, None),  # the plan is gone or unreadable
        ({}, {"features": {"dedicatedAddress": True}}, None),
    ],
)
def test_the_panel_sends_mail_apps_to_the_served_mail_host(
    spec: dict[str, Any], plan_spec: dict[str, Any], want: str | None
) -> None:
    assert setup.mail_host(spec, plan_spec) == want
    listed = {s.service: (s.port, s.host) for _, s in setup.servers(SETTINGS, want)}
    assert listed == (OWN if want else EDGE)


@pytest.mark.parametrize(
    ("spec", "features", "imap"),
    [
        ({"mailHost": HOST}, {"dedicatedAddress": True}, HOST),
        ({"mailHost": HOST}, {}, "imap.edge.example"),  # a shared plan: the edge
        ({}, {"dedicatedAddress": True}, "imap.edge.example"),  # no mail host
    ],
)
def test_status_endpoints_name_the_mail_host_where_it_is_served(
    spec: dict[str, Any], features: dict[str, Any], imap: str
) -> None:
    from vpes_operator.models.server import PersonalMailServer
    from vpes_operator.reconcile import _mail_host, endpoints

    server = PersonalMailServer.model_validate(
        {"metadata": {"name": "one", "namespace": "t"}, "spec": {"plan": "p", **spec}}
    )
    owner = Owner(name="one", namespace="t", uid="u", plan="p")
    got = endpoints(owner, SETTINGS, True, _mail_host(server, {"features": features}))
    assert got.imap_host == imap
    assert got.smtp_host == (HOST if imap == HOST else "submit.edge.example")
