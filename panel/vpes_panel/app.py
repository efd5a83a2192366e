"""The panel's ASGI app: its routes behind the body limit and the security headers."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from vpes_billing.web import BodyLimit
from vpes_operator.clients.kube import Kube

from . import webmail_password
from .routes import registry
from .settings import Settings
from .web import Panel

# Pages carry their own CSS inline and no script at all; nothing may frame them.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        b"form-action 'self' https:; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.app = app
        self.headers = SECURITY_HEADERS if headers is None else headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.headers
            await send(message)

        await self.app(scope, receive, with_headers)


async def healthz(request: Request) -> Response:
    return Response("ok")


def build_app(settings: Settings, kube: Kube) -> ASGIApp:
    return build_apps(settings, kube)[0]


def build_apps(settings: Settings, kube: Kube) -> tuple[ASGIApp, ASGIApp]:
    """(the pages, for the public port; the webmail's password change, for the internal
    port): one Panel, so that both count password attempts against one budget."""
    panel = Panel(settings, kube)
    routes = [Route("/healthz", healthz), *registry.routes(panel)]
    app = Starlette(routes=routes)
    public = SecurityHeaders(BodyLimit(app, settings.max_body_bytes))
    return public, SecurityHeaders(webmail_password.build_internal_app(panel))
