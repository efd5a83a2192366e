"""vpes-web's routing by Host: which name serves what, 404 for a domain nobody hosts
or an address of another domain, and hostile autodiscover bodies refused."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from starlette.responses import PlainTextResponse, Response
from starlette.testclient import TestClient
from vpes_operator.dns import records
from vpes_operator.settings import OperatorSettings
from vpes_panel.wellknown import names
from vpes_panel.wellknown.__main__ import DropQuery
from vpes_panel.wellknown.app import build_app
from vpes_panel.wellknown.autodiscover import OUTLOOK_SCHEMA
from vpes_panel.wellknown.hosted import HostedDomains
from vpes_panel.wellknown.routes import ROUTES
from vpes_panel.wellknown.routing import Call, HostRoute
from vpes_panel.wellknown.settings import WebSettings

from .hosted_support import indexed

pytestmark = pytest.mark.unit

MAIL = OperatorSettings(
    imap_host="imap.edge.example",
    smtp_host="smtp.edge.example",
    mx_host="mx.edge.example",
    edge_web_host="web.edge.example",
)
SERVERS: list[dict[str, Any]] = [
    {
        "metadata": {"name": "a", "namespace": "a"},
        "spec": {"domains": ["one.example", "xn--bcher-kva.example"]},
    },
    {"metadata": {"name": "b", "namespace": "b"}, "spec": {"domains": ["two.example"]}},
    {"metadata": {"name": "c", "namespace": "c"}, "spec": {}},
]
OL = "{" + OUTLOOK_SCHEMA + "}"
AUTOCONFIG = "/mail/config-v1.1.xml"
WELLKNOWN = "/.well-known/autoconfig/mail/config-v1.1.xml"
AUTODISCOVER = "/autodiscover/autodiscover.xml"


def outlook_request(address: str, schema: str = OUTLOOK_SCHEMA) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
        'requestschema/2006"><Request>'
        f"<EMailAddress>{address}</EMailAddress>"
        f"<AcceptableResponseSchema>{schema}</AcceptableResponseSchema>"
        "</Request></Autodiscover>"
    )


def client(
    mail: OperatorSettings = MAIL, hosted: HostedDomains | None = None, **kw: Any
) -> TestClient:
    routes = kw.pop("routes", ROUTES)
    hosted = indexed(SERVERS) if hosted is None else hosted
    return TestClient(build_app(WebSettings(mail=mail, **kw), hosted, routes))


def get(host: str, path: str, **params: str) -> Any:
    return client().get(path, headers={"host": host}, params=params)


def login_names(body: str) -> set[str | None]:
    return {e.text for e in ET.fromstring(body).iter(OL + "LoginName")}


# -- autoconfig ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["autoconfig.one.example", "AutoConfig.One.Example.:443", "autoconfig.two.example"]
)
def test_autoconfig_at_a_hosted_domain(host: str) -> None:
    r = get(host, AUTOCONFIG)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml")
    domain = host.split(".", 1)[1].split(":")[0].rstrip(".").lower()
    provider = ET.fromstring(r.text).find("emailProvider")
    assert provider is not None and provider.get("id") == domain
    assert r.headers["x-content-type-options"] == "nosniff"


def test_a_unicode_domain_is_its_idna_name() -> None:
    r = get("autoconfig.xn--bcher-kva.example", AUTOCONFIG, emailaddress="ann@BÜCHER.example")
    assert r.status_code == 200
    assert 'id="xn--bcher-kva.example"' in r.text
    assert names.host("autoconfig.Bücher.example:443") == "autoconfig.xn--bcher-kva.example"
    assert names.domain("bad_label.example") is None
    assert names.domain("-x.example") is None
    assert names.domain("localhost") is None


@pytest.mark.parametrize(
    ("host", "path", "params"),
    [
        ("autoconfig.three.example", AUTOCONFIG, {}),  # nobody hosts it
        ("autoconfig.example", AUTOCONFIG, {}),  # a prefix and a TLD: no domain
        ("autoconfig.one.example", AUTOCONFIG, {"emailaddress": "ann@two.example"}),
        ("autoconfig.one.example", "/mail/other.xml", {}),
        ("one.example", AUTOCONFIG, {}),  # the path is autoconfig.<domain>'s only
        ("mta-sts.one.example", AUTOCONFIG, {}),
        ("web.edge.example", WELLKNOWN, {"emailaddress": "ann@three.example"}),
        ("three.example", WELLKNOWN, {"emailaddress": "ann@one.example"}),
        ("one.example", WELLKNOWN, {"emailaddress": "ann@two.example"}),
        ("192.0.2.1", WELLKNOWN, {"emailaddress": "ann@one.example"}),
        ("[2001:db8::1]:443", WELLKNOWN, {"emailaddress": "ann@one.example"}),
        ("", AUTOCONFIG, {}),
    ],
)
def test_404_with_nothing_in_it(host: str, path: str, params: dict[str, str]) -> None:
    r = get(host, path, **params)
    assert r.status_code == 404
    assert r.text == "not found"


@pytest.mark.parametrize(
    "host", ["web.edge.example", "one.example", "autoconfig.one.example", "WEB.edge.example."]
)
def test_the_well_known_autoconfig_takes_the_domain_of_the_address(host: str) -> None:
    r = get(host, WELLKNOWN, emailaddress="ann@one.example")
    assert r.status_code == 200
    assert 'id="one.example"' in r.text


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({}, "give the mail address"),
        ({"emailaddress": "no-at-sign"}, "name@example.org"),
        ({"emailaddress": "ann@not a domain"}, "is not a domain name"),
        ({"emailaddress": "a b@one.example"}, "no spaces"),
        ({"emailaddress": "a" * 250 + "@one.example"}, "at most 254"),
    ],
)
def test_a_missing_or_malformed_address_is_400(params: dict[str, str], says: str) -> None:
    r = get("web.edge.example", WELLKNOWN, **params)
    assert r.status_code == 400 and says in r.text


def test_a_hosted_host_with_a_malformed_address_is_400_an_unhosted_one_404() -> None:
    assert get("autoconfig.one.example", AUTOCONFIG, emailaddress="x").status_code == 400
    assert get("autoconfig.three.example", AUTOCONFIG, emailaddress="x").status_code == 404


# -- autodiscover --------------------------------------------------------------------


def post(body: str | bytes, host: str = "autodiscover.one.example", **kw: Any) -> Any:
    return client(**kw).post(
        AUTODISCOVER, content=body, headers={"host": host, "content-type": "text/xml"}
    )


def test_autodiscover_answers_outlooks_post() -> None:
    r = post(outlook_request("Ann@One.Example"))
    assert r.status_code == 200, r.text
    assert login_names(r.text) == {"Ann@one.example"}
    servers = {e.text for e in ET.fromstring(r.text).iter(OL + "Server")}
    assert servers == {"imap.edge.example", "smtp.edge.example"}


def test_autodiscover_paths_ignore_case_and_get_is_answered() -> None:
    c = client()
    r = c.post(
        "/Autodiscover/Autodiscover.xml",
        content=outlook_request("ann@one.example"),
        headers={"host": "autodiscover.one.example"},
    )
    assert r.status_code == 200
    r = c.get(
        AUTODISCOVER,
        params={"emailaddress": "ann@one.example"},
        headers={"host": "autodiscover.one.example"},
    )
    assert r.status_code == 200 and login_names(r.text) == {"ann@one.example"}
    r = c.get(AUTODISCOVER, headers={"host": "autodiscover.one.example"})
    assert r.status_code == 200 and login_names(r.text) == set()


def test_autodiscover_for_another_domains_address_or_an_unhosted_host_is_404() -> None:
    assert post(outlook_request("ann@two.example")).status_code == 404
    r = post(outlook_request("ann@three.example"), host="autodiscover.three.example")
    assert r.status_code == 404 and r.text == "not found"


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    + "]><Autodiscover><Request><EMailAddress>&lol9;</EMailAddress></Request></Autodiscover>"
).replace("&lol0;", "&lol;")
XXE = (
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<Autodiscover><Request><EMailAddress>&x;@one.example</EMailAddress></Request></Autodiscover>"
)
PARAMETER = (
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY % p SYSTEM "http://192.0.2.1/x.dtd"> %p;]>'
    "<Autodiscover/>"
)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (BILLION_LAUGHS, "document type declarations"),
        (XXE, "document type declarations"),
        (PARAMETER, "document type declarations"),
        ('<!DOCTYPE a SYSTEM "http://192.0.2.1/a.dtd"><a/>', "document type declarations"),
        (
            "<Autodiscover><Request><EMailAddress>&undeclared;</EMailAddress></Request>"
            "</Autodiscover>",
            "not well-formed",
        ),
        ("<Autodiscover><Request>", "not well-formed"),
        ("", "not well-formed"),
        ("<Autodiscover><Request/></Autodiscover>", "no EMailAddress"),
        ("<a>" * 20 + "</a>" * 20, "nested too deeply"),
        (outlook_request("x" * 2000 + "@one.example"), "too long"),
        (outlook_request("ann@one.example", "urn:mobilesync"), "only the response schema"),
        (outlook_request("not-an-address"), "name@example.org"),
    ],
)
def test_hostile_or_broken_autodiscover_bodies_are_400(body: str, says: str) -> None:
    r = post(body)
    assert r.status_code == 400, r.text
    assert says in r.text
    assert "root:" not in r.text


def test_an_oversized_body_is_413_declared_or_not() -> None:
    big = outlook_request("ann@one.example") + " " * 20000
    assert post(big).status_code == 413

    def chunks() -> Any:
        for _ in range(40):
            yield b" " * 1024

    r = client().post(AUTODISCOVER, content=chunks(), headers={"host": "autodiscover.one.example"})
    assert r.status_code == 413
    # A limit of its own: the same body passes under a larger one.
    assert post(big, max_body_bytes=64 * 1024).status_code == 200


# -- MTA-STS and the rest ------------------------------------------------------------


def test_the_mta_sts_policy_is_served_as_text_exactly() -> None:
    r = get("mta-sts.two.example", "/.well-known/mta-sts.txt")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == records.mta_sts_policy(MAIL)
    off = client(MAIL.model_copy(update={"mta_sts_mode": "off"}))
    r = off.get("/.well-known/mta-sts.txt", headers={"host": "mta-sts.two.example"})
    assert r.status_code == 404
    assert get("mta-sts.three.example", "/.well-known/mta-sts.txt").status_code == 404


def test_a_method_a_route_does_not_take_is_405() -> None:
    c = client()
    r = c.post("/.well-known/mta-sts.txt", headers={"host": "mta-sts.one.example"})
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    r = c.put(AUTODISCOVER, headers={"host": "autodiscover.one.example"})
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"


def test_healthz_at_any_host_and_503_until_the_servers_are_listed() -> None:
    assert client().get("/healthz").text == "ok"
    c = client(hosted=HostedDomains())  # nothing listed yet
    assert c.get("/healthz").status_code == 200
    r = c.get(AUTOCONFIG, headers={"host": "autoconfig.one.example"})
    assert r.status_code == 503 and r.headers["retry-after"]


def test_a_route_added_to_the_table_gets_its_host_domain_and_path_parameters() -> None:
    """How a new endpoint is wired (as WKD is): a (prefix, path) route of its own."""
    seen: list[tuple[str | None, dict[str, Any]]] = []

    async def extra(call: Call) -> Response:
        seen.append((call.host_domain, call.params))
        return PlainTextResponse("extra")

    routes = [*ROUTES, HostRoute("extra", "/.well-known/extra/{d}/item/{name}", extra)]
    c = client(routes=routes)
    r = c.get("/.well-known/extra/one.example/item/abc123", headers={"host": "extra.one.example"})
    assert r.status_code == 200
    assert seen == [("one.example", {"d": "one.example", "name": "abc123"})]
    r = c.get("/.well-known/extra/x/item/abc", headers={"host": "extra.three.example"})
    assert r.status_code == 404 and len(seen) == 1
    assert c.get(AUTOCONFIG, headers={"host": "autoconfig.one.example"}).status_code == 200


def test_the_access_log_keeps_the_path_not_the_address() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("192.0.2.1:5000", "GET", WELLKNOWN + "?emailaddress=ann%40one.example", "1.1", 200),
        None,
    )
    assert DropQuery().filter(record)
    assert record.getMessage() == f'192.0.2.1:5000 - "GET {WELLKNOWN} HTTP/1.1" 200'


def test_the_access_log_keeps_no_calendar_login_either() -> None:
    path = "/dav/ann%40one.example/calendar/x.ics?sync=1"
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("192.0.2.1:5000", "PUT", path, "1.1", 201),
        None,
    )
    assert DropQuery().filter(record)
    assert record.getMessage() == '192.0.2.1:5000 - "PUT /dav/ HTTP/1.1" 201'
