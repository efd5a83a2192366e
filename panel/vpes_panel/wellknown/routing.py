"""Routing by the Host header, then the path: one table of `HostRoute`s.

A route with a prefix ("autoconfig") answers at <prefix>.<domain> for any
domain; one without answers at any host (the domain then comes from the
request, e.g. `?emailaddress=`). Paths use Starlette's syntax (`{name}`,
`{name:path}`), matched without regard to case; their parameters reach the
endpoint in `Call.params`. Before any endpoint runs, the domain the Host names
must be hosted (else 404, with nothing in the body): the Host's name after the
route's prefix, or for a route without one the Host itself (a known prefix
stripped), except the edge's own web name, which names no domain.

To serve something new (e.g. WKD at openpgpkey.<domain>), add a HostRoute to the
table given to `build_app`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import compile_path

from . import names
from .hosted import HostedDomains, HostedUnavailableError
from .settings import WebSettings


def not_found() -> Response:
    return PlainTextResponse("not found", 404)


def bad_request(message: str) -> Response:
    return PlainTextResponse(message, 400)


@dataclass
class Web:
    """What every endpoint shares: the settings and the index of hosted domains."""

    settings: WebSettings
    hosted: HostedDomains

    async def is_hosted(self, domain: str) -> bool:
        return domain in await run_in_threadpool(self.hosted.domains)

    async def mail_host(self, domain: str) -> str | None:
        """The served mail host of the server that has `domain` (None: the edge's)."""
        hosting = await run_in_threadpool(self.hosted.hosting, domain)
        return hosting.mail_host if hosting is not None else None


@dataclass(frozen=True)
class Target:
    domain: str
    address: str | None  # normalised (its domain as spec.domains writes it)


@dataclass
class Call:
    """One request to one route."""

    request: Request
    web: Web
    # The hosted domain the Host names (checked before the endpoint runs); None: the
    # Host is the edge's own web name.
    host_domain: str | None
    params: dict[str, Any] = field(default_factory=dict)

    async def target(self, address: str | None) -> Target | None:
        """Whom to answer for: the Host's domain, or the address's (which must then be
        the same, or hosted when the Host names no domain); None when there is nothing
        to answer (404). BadAddressError: the address is malformed, or needed and absent."""
        if not address:
            if self.host_domain is None:
                raise names.BadAddressError("give the mail address: ?emailaddress=name@domain")
            return Target(self.host_domain, None)
        normalised, domain = names.address(address)
        if self.host_domain is not None:
            return Target(domain, normalised) if domain == self.host_domain else None
        return Target(domain, normalised) if await self.web.is_hosted(domain) else None


Endpoint = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class HostRoute:
    prefix: str | None  # "autoconfig": served at autoconfig.<domain>; None: at any host
    path: str
    endpoint: Endpoint
    methods: tuple[str, ...] = ("GET",)


@dataclass(frozen=True)
class _Compiled:
    route: HostRoute
    regex: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]


class HostRouter:
    """Picks a route by Host and path (see the module's text)."""

    def __init__(self, web: Web, routes: Sequence[HostRoute]) -> None:
        self.web = web
        self.routes: list[_Compiled] = []
        for route in routes:
            regex, _, convertors = compile_path(route.path)
            self.routes.append(_Compiled(route, re.compile(regex.pattern, re.I), convertors))
        self.prefixes = sorted({r.prefix for r in routes if r.prefix}, key=len, reverse=True)

    def _host_domain(self, route: HostRoute, host: str) -> str | None:
        """The domain `host` names for `route` ("" when it names none it could serve)."""
        if route.prefix is not None:
            head = route.prefix + "."
            rest = host[len(head) :] if host.startswith(head) else ""
            return rest if "." in rest else ""
        if host == self.web.settings.mail.edge_web_host.rstrip(".").lower():
            return None
        for prefix in self.prefixes:
            if host.startswith(prefix + ".") and "." in host[len(prefix) + 1 :]:
                return host[len(prefix) + 1 :]
        return host

    async def dispatch(self, request: Request) -> Response:
        host = names.host(request.headers.get("host", ""))
        if host is None:
            return not_found()
        method = "GET" if request.method == "HEAD" else request.method
        matched: list[tuple[_Compiled, str | None, dict[str, Any]]] = []
        for c in self.routes:
            m = c.regex.fullmatch(request.url.path)
            domain = self._host_domain(c.route, host) if m else ""
            if m and domain != "":
                params = {k: c.convertors[k].convert(v) for k, v in m.groupdict().items()}
                matched.append((c, domain, params))
        if not matched:
            return not_found()
        allowed = [x for x in matched if method in x[0].route.methods]
        if not allowed:
            methods = sorted({m for x in matched for m in x[0].route.methods})
            return PlainTextResponse("method not allowed", 405, {"Allow": ", ".join(methods)})
        c, domain, params = allowed[0]
        try:
            if domain is not None and not await self.web.is_hosted(domain):
                return not_found()
            return await c.route.endpoint(Call(request, self.web, domain, params))
        except HostedUnavailableError:
            return PlainTextResponse("not ready, try again", 503, {"Retry-After": "10"})
        except names.BadAddressError as e:
            return bad_request(str(e))
