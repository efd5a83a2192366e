"""The demo's check of the customer panel in the cluster: log in as a customer over
HTTP (the login form's CSRF token, the session cookie) and read the overview."""

from __future__ import annotations

import re
import time

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
