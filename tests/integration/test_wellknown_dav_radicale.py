"""The calendar proxy in front of a real Radicale 3.1.8 (the version of the tenant's
image) on loopback, driven by a real CalDAV client (the `caldav` package): discovery
(PROPFIND), a calendar made, an event PUT and read back (REPORT, GET), all through
vpes-web under uvicorn, with the hrefs carrying the /dav prefix."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import caldav
import httpx
import pytest
from vpes_panel.wellknown.app import build_app
from vpes_panel.wellknown.hosted import Hosting
from vpes_panel.wellknown.settings import WebSettings

from tests.unit.dav_support import MAIL, closed_port, hosted, served, wait_for_port

pytestmark = pytest.mark.integration

LOGIN, PASSWORD = "ann@one.example", "correct horse battery"
HOME = "ann%40one.example"  # the login in a path, as Radicale writes it
# The proxy answers at its edge web name; on loopback that is the address itself.
EDGE = "127.0.0.1"


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("radicale")
    (root / "users").write_text(f"{LOGIN}:{PASSWORD}\n")
    port = closed_port()
    config = root / "config"
    config.write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n"
        f"[auth]\ntype = htpasswd\nhtpasswd_filename = {root / 'users'}\n"
        "htpasswd_encryption = plain\n"
        f"[storage]\nfilesystem_folder = {root / 'collections'}\n"
        "[logging]\nlevel = warning\n"
    )
    process = subprocess.Popen([sys.executable, "-m", "radicale", "--config", str(config)])
    try:
        wait_for_port(port, lambda: process.poll() is None)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def proxy(radicale: int) -> Iterator[str]:
    """vpes-web under uvicorn on loopback, its backend the Radicale above."""
    seen: list[Hosting] = []

    def backend(h: Hosting) -> str:
        seen.append(h)
        return f"http://127.0.0.1:{radicale}"

    settings = WebSettings(mail=MAIL.model_copy(update={"edge_web_host": EDGE}))
    with served(build_app(settings, hosted(), dav_backend=backend)) as port:
        yield f"http://{EDGE}:{port}"
    assert seen and all(h == Hosting("ann", "mail", "big", True) for h in seen)


EVENT = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//vpes//test//EN
BEGIN:VEVENT
UID:{uid}
DTSTAMP:20260101T090000Z
DTSTART:20260102T100000Z
DTEND:20260102T110000Z
SUMMARY:Dentist
END:VEVENT
END:VCALENDAR
"""


def test_a_caldav_client_makes_a_calendar_and_an_event_through_the_proxy(proxy: str) -> None:
    with caldav.DAVClient(url=f"{proxy}/dav/", username=LOGIN, password=PASSWORD) as client:
        principal = client.principal()  # PROPFIND current-user-principal
        assert str(principal.url).startswith(f"{proxy}/dav/{HOME}/")
        calendar = principal.make_calendar(name="Work", cal_id="work")
        uid = str(uuid.uuid4())
        calendar.save_event(EVENT.format(uid=uid))  # PUT
        [event] = calendar.events()  # REPORT
        assert "SUMMARY:Dentist" in event.data
        href = str(event.url)
        assert href.startswith(f"{proxy}/dav/{HOME}/work/")
    got = httpx.get(href, auth=(LOGIN, PASSWORD))  # GET, as the client wrote the href
    assert got.status_code == 200 and f"UID:{uid}" in got.text
    assert got.headers["content-type"].startswith("text/calendar")


def test_a_wrong_password_gets_the_proxys_own_401(proxy: str) -> None:
    r = httpx.request("PROPFIND", f"{proxy}/dav/", auth=(LOGIN, "wrong"), headers={"depth": "0"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="vpes"'


def test_the_well_known_name_leads_a_client_to_the_proxy(proxy: str) -> None:
    r = httpx.request("PROPFIND", f"{proxy}/.well-known/caldav", headers={"host": "one.example"})
    assert r.status_code == 301 and r.headers["location"] == f"https://{EDGE}/dav/"


def test_radicale_serves_the_prefix_it_is_told(proxy: str, radicale: int) -> None:
    """Without the proxy's X-Script-Name, Radicale's hrefs would lack /dav: the header
    is what makes them right (checked on the answer to a PROPFIND)."""
    body = '<propfind xmlns="DAV:"><prop><current-user-principal/></prop></propfind>'
    through = httpx.request(
        "PROPFIND", f"{proxy}/dav/", auth=(LOGIN, PASSWORD), headers={"depth": "0"}, content=body
    )
    direct = httpx.request(
        "PROPFIND",
        f"http://127.0.0.1:{radicale}/",
        auth=(LOGIN, PASSWORD),
        headers={"depth": "0"},
        content=body,
    )
    assert through.status_code == direct.status_code == 207
    assert f"<href>/dav/{HOME}/</href>" in through.text.replace("D:", "")
    assert f"<href>/{HOME}/</href>" in direct.text.replace("D:", "")
