"""The demo's checks of the customer's web in the cluster: log in to the panel as a
customer over HTTP (the login form's CSRF token, the session cookie) and read the
overview; ask vpes-web what a mail app asks for the customer's domain."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET

import httpx

from .errors import ClusterError

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
DOMAINS = re.compile(r'<tr id="domain-([^"]+)"')


def panel_check(url: str, address: str, password: str, timeout: float = 120) -> str:
    """What the panel shows `address` after logging in (retried while the operator
    has not published the login's hash yet); ClusterError when it never works."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        with httpx.Client(base_url=url, timeout=20, follow_redirects=False) as c:
            try:
                last = _login(c, address, password)
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
            else:
                if not last:
                    overview = c.get("/")
                    domains = DOMAINS.findall(c.get("/domains").text)
                    if overview.status_code == 200 and "Your mail server" in overview.text:
                        return f"logged in; the overview and domains ({', '.join(domains)}) shown"
                    last = f"overview answered {overview.status_code}"
        time.sleep(2)
    raise ClusterError(f"the panel at {url} did not let {address} in: {last}")


def _login(c: httpx.Client, address: str, password: str) -> str:
    """ "" when logged in, else what went wrong."""
    form = c.get("/login")
    m = CSRF.search(form.text)
    if form.status_code != 200 or not m:
        return f"the login page answered {form.status_code}"
    r = c.post("/login", data={"address": address, "password": password, "csrf": m.group(1)})
    return "" if r.status_code == 303 else f"the login answered {r.status_code}"


def web_check(url: str, domain: str, timeout: float = 120) -> str:
    """What vpes-web answers for `domain` at the names its DNS records point at it
    (Thunderbird's autoconfig, the MTA-STS policy); ClusterError when it never does."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            with httpx.Client(base_url=url, timeout=20) as c:
                auto = c.get("/mail/config-v1.1.xml", headers={"host": f"autoconfig.{domain}"})
                sts = c.get("/.well-known/mta-sts.txt", headers={"host": f"mta-sts.{domain}"})
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
        else:
            if auto.status_code == 200:
                servers = [
                    f"{e.get('type')} {e.findtext('hostname')}:{e.findtext('port')}"
                    for e in ET.fromstring(auto.content).iter()  # noqa: S314 (our own service)
                    if e.tag in ("incomingServer", "outgoingServer")
                ]
                mode = next((x for x in sts.text.split() if x in MTA_STS_MODES), "none")
                return f"autoconfig gives {', '.join(servers)}; MTA-STS mode {mode}"
            last = f"autoconfig answered {auto.status_code}"
        time.sleep(2)
    raise ClusterError(f"vpes-web at {url} did not answer for {domain}: {last}")


MTA_STS_MODES = ("enforce", "testing", "none")


DEMO_EVENT = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//vpes demo//EN\r\nBEGIN:VEVENT\r\n"
    "UID:demo-dinner@vpes.demo\r\nDTSTAMP:20261206T120000Z\r\nDTSTART:20261224T180000Z\r\n"
    "DTEND:20261224T200000Z\r\nSUMMARY:Demo dinner\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def dav_check(
    url: str, edge_web_host: str, address: str, password: str, timeout: float = 120
) -> str:
    """A calendar event stored and read back through vpes-web's calendar proxy
    (/dav at the edge's web name) in the customer's own Radicale; ClusterError when
    it never works."""
    calendar = f"/dav/{address}/demo/"
    event = f"{calendar}dinner.ics"
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            with httpx.Client(
                base_url=url, timeout=20, auth=(address, password),
                headers={"host": edge_web_host},
            ) as c:  # fmt: skip
                made = c.request("MKCALENDAR", calendar)
                put = c.put(event, content=DEMO_EVENT, headers={"content-type": "text/calendar"})
                got = c.get(event)
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
        else:
            if made.status_code in (201, 405, 409) and put.is_success and "Demo dinner" in got.text:
                return (
                    f"event 'Demo dinner' stored in {address}'s calendar and read back over CalDAV"
                )
            last = f"MKCALENDAR {made.status_code}, PUT {put.status_code}, GET {got.status_code}"
        time.sleep(2)
    raise ClusterError(f"calendar through vpes-web at {url} for {address}: {last}")


ROUNDCUBE_TOKEN = re.compile(r'name="_token" value="([^"]+)"')


def webmail_check(url: str, address: str, password: str, timeout: float = 180) -> str:
    """Log in to the shared webmail (Roundcube's own login form, its request token and
    cookie) as `address` and open the inbox; ClusterError when it never works (the
    operator publishes the allowed domains, the edge routes the login)."""
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            with httpx.Client(base_url=url, timeout=30) as c:
                form = c.get("/")
                token = ROUNDCUBE_TOKEN.search(form.text)
                if token is None:
                    last = f"no login form ({form.status_code})"
                else:
                    fields = {"_task": "login", "_action": "login", "_timezone": "UTC"}
                    fields |= {"_user": address, "_pass": password, "_token": token.group(1)}
                    inbox = c.post("/?_task=login", data=fields, follow_redirects=True)
                    if "_task=mail" in str(inbox.url) and "messagelist" in inbox.text:
                        return "logged in and opened the inbox"
                    last = f"login answered {inbox.status_code} at {inbox.url}"
        except httpx.HTTPError as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(3)
    raise ClusterError(f"webmail at {url} for {address}: {last}")
