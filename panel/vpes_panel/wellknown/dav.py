"""The calendar and contacts proxy: `https://<edge web host>/dav/...` to the Radicale
of the server that has the login's domain (its Service's port `dav`, 5232).

Every request needs Basic auth with a login `name@domain`: none, a garbled one, a
login with no domain or a domain no server has, and a wrong password (the tenant's
Radicale answers 401) all get the same 401, so the answer tells nothing about which
domains are hosted. A server whose plan has no calendar gets 403, with a sentence
saying so. Bodies over `dav_max_body` are refused (413) before the backend is asked:
by Content-Length, or, sent chunked, once more than that has arrived. Radicale 3.1
reads a body only by its Content-Length (wsgiref has no chunked input), so a chunked
body is gathered (within the limit) and sent with its length; a declared one streams.

The backend gets the path without `/dav` (the query kept), `X-Script-Name: /dav` (so
its hrefs carry the prefix, and a MOVE's Destination, which Radicale checks against
the Host header and that prefix, is understood as the client wrote it: the Host is
passed unchanged), `X-Forwarded-For` and `X-Forwarded-Proto`, and the client's
end-to-end headers (Authorization, Depth, Destination, If-Match...) but never
hop-by-hop ones, nor forwarded or user headers the client made up, nor cookies. The
answer streams back, its hop-by-hop headers dropped. The backend unreachable or
silent past `dav_timeout_seconds`: 503.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from vpes_operator import naming
from yarl import URL

from . import names
from .dav_address import PREFIX
from .hosted import HostedDomains, Hosting
from .settings import WebSettings

log = logging.getLogger("vpes.web.dav")

PORT = 5232
REALM = 'Basic realm="vpes"'
NO_CALENDAR = "Your plan has no calendar and contacts. Ask your provider for a plan that has them."
UNAVAILABLE = "calendar service not available, try again"
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never taken from the client: what the proxy says itself, what would name a user to
# a backend that trusted it, what Radicale never reads, and the body's framing.
NOT_FROM_CLIENT = frozenset(
    {
        "x-script-name",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "forwarded",
        "x-remote-user",
        "remote-user",
        "cookie",
        "content-length",
        "expect",
    }
)
# aiohttp adds these when absent: the backend gets only what the client sent.
NO_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
CHUNK = 64 * 1024

# Where a server's Radicale listens: "http://host:port", without a path.
Backend = Callable[[Hosting], str]


class TooLargeError(Exception):
    """The request body is over the limit."""


def cluster_backend(settings: WebSettings) -> Backend:
    """The server's Service in its namespace, port `dav`."""
    domain = settings.mail.cluster_domain

    def backend(hosting: Hosting) -> str:
        service = naming.service(hosting.server)
        return f"http://{service}.{hosting.namespace}.svc.{domain}:{PORT}"

    return backend


def basic_login(header: str) -> str | None:
    """The user name of a Basic Authorization header; None when it is none or garbled."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, colon, _ = decoded.partition(":")
    return login if colon and login else None


def login_domain(header: str) -> str | None:
    """The domain of the login (as spec.domains writes it), or None: no such login."""
    login = basic_login(header)
    if login is None:
        return None
    try:
        return names.address(login)[1]
    except names.BadAddressError:
        return None


def unauthorized() -> Response:
    return PlainTextResponse(
        "Log in with your mail address and its password.", 401, {"WWW-Authenticate": REALM}
    )


def too_large(limit: int) -> Response:
    mib = limit / (1024 * 1024)
    return PlainTextResponse(
        f"request body too large: at most {mib:g} MiB ({limit} bytes) is accepted", 413
    )


def unavailable() -> Response:
    return PlainTextResponse(UNAVAILABLE, 503, {"Retry-After": "30"})


def backend_path(raw_path: bytes) -> str:
    """The request's path (still percent-encoded) without the /dav prefix."""
    rest = raw_path.decode("latin-1")[len(PREFIX) :]
    return rest or "/"


def request_headers(request: Request) -> list[tuple[str, str]]:
    """What the backend gets: the client's end-to-end headers and the proxy's own."""
    named = {t.strip().lower() for v in request.headers.getlist("connection") for t in v.split(",")}
    kept = [
        (k, v)
        for k, v in request.headers.items()
        if k not in HOP_BY_HOP and k not in NOT_FROM_CLIENT and k not in named
    ]
    client = request.client.host if request.client else ""
    return [
        *kept,
        ("X-Script-Name", PREFIX),
        ("X-Forwarded-For", client),
        ("X-Forwarded-Proto", request.url.scheme),
    ]


def response_headers(raw: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    """The backend's answer's headers without the hop-by-hop ones (and those its
    Connection header names)."""
    named = {
        t.strip().lower()
        for k, v in raw
        if k.lower() == b"connection"
        for t in v.decode("latin-1").split(",")
    }
    dropped = HOP_BY_HOP | named
    return [(k.lower(), v) for k, v in raw if k.decode("latin-1").lower() not in dropped]


async def gathered(request: Request, limit: int) -> bytes:
    """A body without a Content-Length, whole; TooLargeError past `limit`."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLargeError
    return bytes(body)


class DavProxy:
    """The proxy's endpoint (`handle`) and its one HTTP client session."""

    def __init__(
        self, settings: WebSettings, hosted: HostedDomains, backend: Backend | None = None
    ) -> None:
        self.settings = settings
        self.hosted = hosted
        self.backend = backend or cluster_backend(settings)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def session(self) -> aiohttp.ClientSession:
        """The client session of the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            seconds = self.settings.dav_timeout_seconds
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        yield
        await self.close()

    async def _target(self, request: Request) -> Hosting | Response:
        """The server to ask, or the answer that refuses the request."""
        domain = login_domain(request.headers.get("authorization", ""))
        if domain is None:
            return unauthorized()
        hosting = await run_in_threadpool(self.hosted.hosting, domain)
        if hosting is None:
            return unauthorized()
        if not hosting.calendar:
            return PlainTextResponse(NO_CALENDAR, 403)
        return hosting

    async def handle(self, request: Request) -> Response:
        limit = self.settings.dav_max_body
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return too_large(limit)
        target = await self._target(request)
        if isinstance(target, Response):
            return target
        headers = request_headers(request)
        if declared is not None:
            body: bytes | AsyncIterator[bytes] = request.stream()
            headers.append(("Content-Length", declared))
        else:
            try:
                body = await gathered(request, limit)
            except TooLargeError:
                return too_large(limit)
            headers.append(("Content-Length", str(len(body))))
        url = self.backend(target) + backend_path(request.scope.get("raw_path") or b"/dav")
        if request.url.query:
            url += "?" + request.url.query
        return await self._forward(request.method, url, headers, body)

    async def _forward(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes],
    ) -> Response:
        try:
            answer = await self.session().request(
                method,
                URL(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers=NO_AUTO_HEADERS,
            )
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is left to read it
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.warning("the calendar backend %s did not answer: %s", URL(url).host, e)
            return unavailable()
        if answer.status == 401:  # a wrong password: the same answer as no such domain
            answer.release()
            return unauthorized()
        response = StreamingResponse(_streamed(answer), status_code=answer.status)
        response.raw_headers = response_headers(answer.raw_headers)
        return response


async def _streamed(answer: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The backend's body as it comes; cut short (the client sees a short answer) when
    the backend fails midway."""
    try:
        async for chunk in answer.content.iter_chunked(CHUNK):
            yield chunk
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        log.warning("the calendar backend failed while answering: %s", e)
    finally:
        answer.release()
