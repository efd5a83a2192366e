"""Which requests are the calendar's, before the host-routed endpoints (routing.py):

- `/dav` and `/dav/...` at the edge's web name: the proxy (dav.py), any method
  (PROPFIND, REPORT, MKCALENDAR...), with its own body limit;
- `/.well-known/caldav` and `/.well-known/carddav` (RFC 6764) at any host, any method:
  301 to `https://<edge web name>/dav/` (the answer is the same for every host, so it
  tells nothing about which domains are hosted);
- everything else: the app behind (its own methods and body limit).
"""

from __future__ import annotations

from enum import StrEnum

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from . import names
from .dav import DavProxy
from .dav_address import PREFIX, dav_home

WELL_KNOWN = frozenset({"/.well-known/caldav", "/.well-known/carddav"})


class Where(StrEnum):
    PROXY = "proxy"
    REDIRECT = "redirect"
    OTHER = "other"


def where(host_header: str, path: str, edge_web_host: str) -> Where:
    """Where a request for `path` at the Host `host_header` goes."""
    if path.rstrip("/").lower() in WELL_KNOWN:
        return Where.REDIRECT
    edge = edge_web_host.rstrip(".").lower()
    if names.host(host_header) == edge and (path == PREFIX or path.startswith(PREFIX + "/")):
        return Where.PROXY
    return Where.OTHER


class DavRouter:
    """An ASGI app: the calendar's requests to the proxy or a redirect, the rest to
    `other`."""

    def __init__(self, proxy: DavProxy, other: ASGIApp) -> None:
        self.proxy = proxy
        self.other = other
        self.edge_web_host = proxy.settings.mail.edge_web_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.other(scope, receive, send)
            return
        request = Request(scope, receive)
        goes = where(request.headers.get("host", ""), scope["path"], self.edge_web_host)
        if goes is Where.REDIRECT:
            response = RedirectResponse(dav_home(self.edge_web_host), 301)
            await response(scope, receive, send)
        elif goes is Where.PROXY:
            answer = await self.proxy.handle(request)
            await answer(scope, receive, send)
        else:
            await self.other(scope, receive, send)
