"""The ASGI app: the routes (routes.py) behind a request body limit, and the sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .routes import Routes
from .service import BillingService

log = logging.getLogger("vpes.billing")


class BodyLimit:
    """Refuses request bodies over `limit` bytes (413), declared or streamed; calls
    `on_reject` for each refusal (the `rejected{reason="size"}` counter)."""

    def __init__(
        self, app: ASGIApp, limit: int, on_reject: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.on_reject = on_reject

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on_reject is not None:
            self.on_reject()
        await Response("request body too large", 413)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await self._refuse(scope, receive, send)
                return
        seen = 0
        too_large = started = False

        async def limited() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    too_large = True
                    raise _TooLargeError
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # the app's answer to the exception (Starlette's 500): ours instead
            started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not too_large:  # _TooLargeError as is, or re-raised wrapped by the app
                raise
        if too_large and not started:
            await self._refuse(scope, receive, send)


class _TooLargeError(Exception):
    pass


def build_app(service: BillingService) -> ASGIApp:
    """The service's routes (routes.py), its periodic sweep, and the body size limit."""
    settings = service.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        if settings.sweep_seconds > 0:
            task = asyncio.create_task(_sweeper(service, settings.sweep_seconds))
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = Starlette(routes=Routes(service).table(), lifespan=lifespan)
    return BodyLimit(app, settings.max_body_bytes, service.metrics.rejected.labels("size").inc)


async def _sweeper(service: BillingService, every: float) -> None:
    sweep: Callable[[], Awaitable[Any]] = lambda: run_in_threadpool(service.sweep)  # noqa: E731
    while True:
        await asyncio.sleep(every)
        try:
            await sweep()
        except Exception:
            log.exception("sweep failed; next in %.0fs", every)
