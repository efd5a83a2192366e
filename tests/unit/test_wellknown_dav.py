"""vpes-web's calendar proxy: which Host and path go where, Basic auth read and refused
alike whatever is wrong, a plan without calendar refused, bodies limited, a backend
away answered, and a round trip through a real HTTP server on loopback."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from vpes_panel.wellknown import dav
from vpes_panel.wellknown.app import build_app
from vpes_panel.wellknown.dav_routing import Where, where
from vpes_panel.wellknown.hosted import Hosting
from vpes_panel.wellknown.settings import WebSettings

from tests.unit.dav_support import (
    MAIL,
    Recorder,
    closed_port,
    hosted,
    recording_backend,
    served,
    silent_backend,
)

pytestmark = pytest.mark.unit

EDGE = "web.edge.example"


def basic(login: str, password: str = "secret") -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


ANN = basic("ann@One.Example")


OPEN = ExitStack()


@pytest.fixture(autouse=True)
def _closed_after() -> Iterator[None]:
    """Each test's clients run their app's lifespan (one event loop, the proxy's
    session closed at the end)."""
    with OPEN:
        yield


def client(port: int, seen: list[Hosting] | None = None, **kw: Any) -> TestClient:
    def backend(h: Hosting) -> str:
        if seen is not None:
            seen.append(h)
        return f"http://127.0.0.1:{port}"

    app = build_app(WebSettings(mail=MAIL, **kw), hosted(), dav_backend=backend)
    return OPEN.enter_context(TestClient(app, base_url=f"http://{EDGE}"))


@pytest.fixture
def backend() -> Iterator[Recorder]:
    with recording_backend() as recorder:
        yield recorder


# -- where requests go ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "goes"),
    [
        (EDGE, "/dav", Where.PROXY),
        (EDGE, "/dav/", Where.PROXY),
        (EDGE, "/dav/ann@one.example/calendar/", Where.PROXY),
        ("WEB.Edge.Example.:443", "/dav/x", Where.PROXY),
        (EDGE, "/davx", Where.OTHER),
        (EDGE, "/DAV/", Where.OTHER),
        (EDGE, "/mail/config-v1.1.xml", Where.OTHER),
        ("one.example", "/dav/", Where.OTHER),  # only at the edge's web name
        ("autoconfig.one.example", "/dav/", Where.OTHER),
        ("", "/dav/", Where.OTHER),
        ("one.example", "/.well-known/caldav", Where.REDIRECT),
        ("nobody.example", "/.well-known/carddav/", Where.REDIRECT),
        (EDGE, "/.well-known/CalDAV", Where.REDIRECT),
        ("one.example", "/.well-known/caldav/x", Where.OTHER),
        ("one.example", "/.well-known/mta-sts.txt", Where.OTHER),
    ],
)
def test_which_host_and_path_go_where(host: str, path: str, goes: Where) -> None:
    assert where(host, path, EDGE + ".") == goes


@pytest.mark.parametrize("method", ["GET", "PROPFIND", "OPTIONS"])
@pytest.mark.parametrize("host", ["one.example", "nobody.example", EDGE])
def test_the_well_known_names_redirect_to_the_proxy(method: str, host: str) -> None:
    c = client(closed_port())
    r = c.request(method, "/.well-known/caldav", headers={"host": host}, follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["location"] == f"https://{EDGE}/dav/"
    r = c.request(method, "/.well-known/carddav", headers={"host": host}, follow_redirects=False)
    assert r.headers["location"] == f"https://{EDGE}/dav/"


def test_the_other_endpoints_are_still_there_and_dav_elsewhere_is_404() -> None:
    c = client(closed_port())
    assert c.get("/healthz").text == "ok"
    r = c.get("/mail/config-v1.1.xml", headers={"host": "autoconfig.one.example"})
    assert r.status_code == 200
    r = c.get("/dav/", headers={"host": "one.example", "authorization": ANN})
    assert r.status_code == 404


def test_the_backend_is_the_servers_service_in_its_namespace() -> None:
    backend = dav.cluster_backend(WebSettings(mail=MAIL))
    assert backend(Hosting("ann", "mail", "big", True)) == "http://mail.ann.svc.cluster.test:5232"
    assert dav.backend_path(b"/dav") == "/"
    assert dav.backend_path(b"/dav/a%40b.example/cal%20x/") == "/a%40b.example/cal%20x/"


# -- auth ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "domain"),
    [
        (basic("ann@One.Example."), "one.example"),
        (basic("ann@b\u00fccher.example", "p:with:colons"), "xn--bcher-kva.example"),
        ("basic " + base64.b64encode(b"x@two.example:").decode(), "two.example"),
        ("", None),
        ("Bearer abc", None),
        ("Basic", None),
        ("Basic !!!not-base64", None),
        ("Basic " + base64.b64encode(b"no-colon@one.example").decode(), None),
        ("Basic " + base64.b64encode(b"\xff\xfe:pw").decode(), None),
        (basic("ann"), None),
        (basic("ann@localhost"), None),
        (basic("@one.example"), None),
    ],
)
def test_the_logins_domain_or_none(header: str, domain: str | None) -> None:
    assert dav.login_domain(header) == domain


def test_every_refused_login_gets_the_same_401(backend: Recorder) -> None:
    backend.status = 401
    backend.headers = [("WWW-Authenticate", 'Basic realm="Radicale - Password Required"')]
    backend.chunks = [b"Access to the requested resource forbidden."]
    c = client(backend.port)
    answers = []
    for auth in [
        None,
        "Basic !!!",
        basic("ann"),
        basic("ann@nobody.example"),  # no server has the domain
        basic("ann@one.example", "wrong"),  # the backend refuses the password
    ]:
        headers = {"authorization": auth} if auth else {}
        r = c.request("PROPFIND", "/dav/", headers=headers)
        answers.append((r.status_code, r.headers["www-authenticate"], r.text))
    assert len(backend.received) == 1  # only the hosted domain's login was passed on
    assert answers == [answers[0]] * 5
    assert answers[0][:2] == (401, 'Basic realm="vpes"')


@pytest.mark.parametrize("login", ["bob@two.example", "cat@three.example"])
def test_a_plan_without_calendar_is_403_and_says_so(backend: Recorder, login: str) -> None:
    r = client(backend.port).request("PROPFIND", "/dav/", headers={"authorization": basic(login)})
    assert r.status_code == 403
    assert "no calendar and contacts" in r.text
    assert backend.received == []


# -- limits and failures --------------------------------------------------------------


def test_a_body_declared_too_large_is_413_before_the_backend(backend: Recorder) -> None:
    c = client(backend.port, dav_max_body=2048)
    r = c.put("/dav/x.ics", content=b"x" * 2049, headers={"authorization": ANN})
    assert r.status_code == 413
    assert "at most" in r.text and "2048 bytes" in r.text
    assert backend.received == []
    r = c.put("/dav/x.ics", content=b"x" * 2048, headers={"authorization": ANN})
    assert r.status_code == 207
    assert len(backend.received[0].body) == 2048


def test_a_chunked_body_is_cut_off_over_the_limit_or_sent_with_its_length(
    backend: Recorder,
) -> None:
    def chunks(n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield b"y" * 1024

    c = client(backend.port, dav_max_body=10 * 1024)
    r = c.put("/dav/x.ics", content=chunks(11), headers={"authorization": ANN})
    assert r.status_code == 413 and "10240 bytes" in r.text
    assert backend.received == []
    r = c.put("/dav/x.ics", content=chunks(10), headers={"authorization": ANN})
    assert r.status_code == 207
    got = backend.received[0]
    assert got.headers["content-length"] == "10240" and got.body == b"y" * 10240
    assert "transfer-encoding" not in got.headers


def test_a_backend_down_or_silent_is_503() -> None:
    r = client(closed_port()).request("PROPFIND", "/dav/", headers={"authorization": ANN})
    assert r.status_code == 503
    assert r.text == "calendar service not available, try again"
    with silent_backend() as port:
        c = client(port, dav_timeout_seconds=0.3)
        r = c.request("PROPFIND", "/dav/", headers={"authorization": ANN})
    assert r.status_code == 503 and r.headers["retry-after"]


# -- the round trip --------------------------------------------------------------------

PROPFIND = (
    b'<?xml version="1.0" encoding="utf-8"?><propfind xmlns="DAV:">'
    b"<prop><current-user-principal/></prop></propfind>"
)
MULTISTATUS = [
    b'<?xml version="1.0"?><multistatus xmlns="DAV:">',
    b"<response/>" * 50,
    b"</multistatus>",
]


def test_a_propfind_goes_through_and_its_answer_comes_back(backend: Recorder) -> None:
    backend.headers = [
        ("Content-Type", "text/xml; charset=utf-8"),
        ("DAV", "1, 2, 3, calendar-access, addressbook"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "not for the client"),
        ("Keep-Alive", "timeout=5"),
    ]
    backend.chunks = MULTISTATUS
    seen: list[Hosting] = []
    r = client(backend.port, seen).request(
        "PROPFIND",
        "/dav/ann%40one.example/calendar/?sync=1",
        content=PROPFIND,
        headers={
            "authorization": ANN,
            "depth": "1",
            "content-type": "text/xml",
            "connection": "keep-alive, X-Private",
            "x-private": "hop",
            "x-forwarded-for": "203.0.113.9",
            "x-script-name": "/elsewhere",
            "x-remote-user": "admin@one.example",
            "cookie": "session=1",
        },
    )
    assert r.status_code == 207
    assert r.content == b"".join(MULTISTATUS)
    assert r.headers["dav"] == "1, 2, 3, calendar-access, addressbook"
    assert r.headers["content-type"] == "text/xml; charset=utf-8"
    assert "x-hop" not in r.headers and "keep-alive" not in r.headers
    assert seen == [Hosting("ann", "mail", "big", True)]
    [got] = backend.received
    assert (got.method, got.path) == ("PROPFIND", "/ann%40one.example/calendar/?sync=1")
    assert got.body == PROPFIND
    h = got.headers
    assert h["authorization"] == ANN and h["depth"] == "1" and h["content-type"] == "text/xml"
    assert h["x-script-name"] == "/dav"
    assert h["x-forwarded-for"] == "testclient"
    assert h["x-forwarded-proto"] == "http"
    assert h["host"] == EDGE  # Radicale checks a MOVE's Destination against it
    assert h["content-length"] == str(len(PROPFIND))
    assert h["user-agent"] == "testclient"  # the client's, not aiohttp's
    for absent in ("x-private", "x-remote-user", "cookie"):
        assert absent not in h, absent


def test_a_move_keeps_its_destination_as_the_client_wrote_it(backend: Recorder) -> None:
    backend.status = 201
    destination = f"https://{EDGE}/dav/ann@one.example/calendar/b.ics"
    r = client(backend.port).request(
        "MOVE",
        "/dav/ann@one.example/calendar/a.ics",
        headers={"authorization": ANN, "destination": destination, "overwrite": "F"},
    )
    assert r.status_code == 201
    [got] = backend.received
    assert got.headers["destination"] == destination and got.headers["overwrite"] == "F"
    assert got.path == "/ann@one.example/calendar/a.ics"


def test_the_answer_streams_before_the_backend_has_finished(backend: Recorder) -> None:
    """The backend sends its first chunk, then waits until the client has it: a proxy
    that gathered the answer first would leave it waiting (released False)."""
    backend.status, backend.chunks = 200, [b"first;", b"second"]
    backend.gate = threading.Event()

    def where_it_is(h: Hosting) -> str:
        return f"http://127.0.0.1:{backend.port}"

    app = build_app(WebSettings(mail=MAIL), hosted(), dav_backend=where_it_is)
    with served(app) as port, httpx.Client() as http:
        url = f"http://127.0.0.1:{port}/dav/ann@one.example/big.ics"
        with http.stream("GET", url, headers={"host": EDGE, "authorization": ANN}) as r:
            chunks = r.iter_raw()
            assert next(chunks) == b"first;"
            backend.gate.set()
            assert b"".join(chunks) == b"second"
    assert backend.released is True
