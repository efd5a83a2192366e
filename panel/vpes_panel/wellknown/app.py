"""vpes-web's ASGI app: the calendar proxy and its redirects (dav_routing.py), then
the host-routed endpoints behind a body limit (413), all with a few headers;
`/healthz` for the kubelet and the ACME HTTP-01 answers (acme.py) at any host."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from vpes_billing.web import BodyLimit

from ..app import SecurityHeaders
from .acme import ROUTE as ACME_ROUTE
from .acme import AcmeAnswers
from .dav import Backend, DavProxy
from .dav_routing import DavRouter
from .hosted import HostedDomains
from .routes import ROUTES
from .routing import HostRoute, HostRouter, Web
from .settings import WebSettings

# Nothing served here is a page: no script, no frame, no sniffing.
HEADERS = [
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def build_app(
    settings: WebSettings,
    hosted: HostedDomains,
    routes: Sequence[HostRoute] = ROUTES,
    dav_backend: Backend | None = None,
    acme: AcmeAnswers | None = None,
) -> ASGIApp:
    """`dav_backend`: where each server's Radicale is (default: its Service); `acme`: the
    HTTP-01 answers to serve (None: none, the path is then a host-routed 404)."""
    router = HostRouter(Web(settings, hosted), routes)
    proxy = DavProxy(settings, hosted, dav_backend)
    answers = [] if acme is None else [Route(ACME_ROUTE, acme.endpoint, methods=["GET"])]
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *answers,
            Route("/{path:path}", router.dispatch, methods=METHODS),
        ],
        lifespan=proxy.lifespan,
    )
    return SecurityHeaders(DavRouter(proxy, BodyLimit(app, settings.max_body_bytes)), HEADERS)
