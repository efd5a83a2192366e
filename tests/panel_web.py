"""The customer panel served for tests: the real app over real HTTP on loopback
(uvicorn in a thread), and the small client steps every panel test repeats (read a
form's CSRF token, log in, post a form). Shared by the integration tier, the
browser tests and the benchmark."""

from __future__ import annotations

import html
import re
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
GENERATION = re.compile(r'name="generation" value="(\d+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """`app` on http://127.0.0.1:<port> until `stop`."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=True, lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 20.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the panel did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def token(page: str) -> str:
    m = CSRF.search(page)
    assert m, "no CSRF token on the page"
    return m.group(1)


def generation(page: str) -> str:
    m = GENERATION.search(page)
    assert m, "no generation on the page"
    return m.group(1)


def client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, follow_redirects=False, timeout=30.0)


def login(url: str, address: str, password: str) -> httpx.Client:
    """A client logged in as `address` (no second factor enrolled)."""
    c = client(url)
    r = c.post(
        "/login",
        data={"address": address, "password": password, "csrf": token(c.get("/login").text)},
    )
    assert r.status_code == 303, f"login of {address} refused: {r.status_code} {r.text[:400]}"
    return c


def post(c: httpx.Client, form_page: str, action: str, **fields: Any) -> httpx.Response:
    """POST `fields` to `action` with the CSRF token (and the generation, when the form
    has one) of the page at `form_page`."""
    page = c.get(form_page)
    assert page.status_code == 200, f"{form_page}: {page.status_code}"
    data = {"csrf": token(page.text), **{k: str(v) for k, v in fields.items()}}
    if "generation" not in data and GENERATION.search(page.text):
        data["generation"] = generation(page.text)
    return c.post(action, data=data)


def field_error(page: str, field: str) -> str | None:
    """The message shown next to `field`, if any."""
    m = re.search(
        rf'<span class="error-message" id="{re.escape(field)}-error">([^<]*)</span>', page
    )
    return html.unescape(m.group(1)) if m else None
