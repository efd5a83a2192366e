"""The ASGI app: Stripe webhooks, signup, the return page, one-time password links."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError

from . import links, pages, signup
from . import naming as n
from .service import BillingService
from .stripe_gateway import StripeUnavailableError

log = logging.getLogger("vpes.billing")
SESSION_ID = re.compile(r"^cs_[A-Za-z0-9_]{1,250}$")


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


def server_state(service: BillingService, session_id: str) -> dict[str, object]:
    selector = f"{n.LABEL_CHECKOUT}={n.label_value(n.digest(session_id))}"
    servers = service.kube.list(API_VERSION, "PersonalMailServer", labels=selector)
    if servers:
        obj = servers[0]
        status = obj.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        return {
            "state": "server",
            "namespace": obj["metadata"]["namespace"],
            "name": obj["metadata"]["name"],
            "phase": status.get("phase"),
            "ready": bool(ready and ready.get("status") == "True"),
            "message": status.get("message") or (ready or {}).get("message") or "",
            "endpoints": status.get("endpoints") or {},
        }
    refusal = service.ledger.refusal(session_id)
    if refusal is not None:
        return {"state": "refused", "message": refusal}
    return {"state": "waiting", "message": "Waiting for the payment to be confirmed."}


async def _form(request: Request) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=20)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def build_app(service: BillingService) -> ASGIApp:
    settings = service.settings

    async def webhook(request: Request) -> Response:
        payload = await request.body()
        try:
            event = service.stripe.verify(payload, request.headers.get("stripe-signature"))
        except ValueError as e:
            service.metrics.rejected.labels("signature").inc()
            log.warning("webhook refused: %s", e)
            return JSONResponse({"error": str(e)}, 400)
        try:
            outcome = await run_in_threadpool(service.handle, event)
        except (ApiError, StripeUnavailableError) as e:
            log.error("event %s: temporary failure, Stripe will retry: %s", event.get("id"), e)
            return JSONResponse({"error": "temporary failure"}, 503)
        # A failed event is answered 500 so that Stripe delivers it again (see service).
        return JSONResponse(
            {"outcome": outcome.outcome, "message": outcome.message},
            500 if outcome.retry else 200,
        )

    async def index(request: Request) -> Response:
        from . import tenant

        plans = await run_in_threadpool(lambda: tenant.plans_by_price(service.kube).values())
        return HTMLResponse(pages.plans(sorted(plans, key=lambda p: p.name)))

    async def signup_page(request: Request) -> Response:
        plan = request.query_params.get("plan", "")
        return HTMLResponse(pages.signup_form(plan, settings.provider_domain, {}))

    async def signup_post(request: Request) -> Response:
        values = await _form(request)
        try:
            form = signup.parse(settings, values)
            session = await run_in_threadpool(
                signup.start, service.kube, service.stripe, settings, form
            )
        except signup.SignupError as e:
            page = pages.signup_form(
                values.get("plan", ""), settings.provider_domain, values, str(e)
            )
            return HTMLResponse(page, 409 if "already served" in str(e) else 422)
        except StripeUnavailableError as e:
            log.error("signup: %s", e)
            return HTMLResponse(
                pages.message("Try again", "Payment is unavailable.", error=True), 503
            )
        return RedirectResponse(session.url or f"/signup/return?session_id={session.id}", 303)

    def _session(request: Request, value: str | None) -> str | None:
        return value if value and SESSION_ID.match(value) else None

    async def return_page(request: Request) -> Response:
        session_id = _session(request, request.query_params.get("session_id"))
        if not session_id:
            return HTMLResponse(pages.message("Not found", "Unknown checkout.", error=True), 404)
        state = await run_in_threadpool(server_state, service, session_id)
        return HTMLResponse(pages.status(state, session_id))

    async def status_json(request: Request) -> Response:
        session_id = _session(request, request.query_params.get("session_id"))
        if not session_id:
            return JSONResponse({"error": "unknown checkout"}, 404)
        return JSONResponse(await run_in_threadpool(server_state, service, session_id))

    async def password_link(request: Request) -> Response:
        session_id = _session(request, (await _form(request)).get("session_id"))
        if not session_id:
            return HTMLResponse(pages.message("Not found", "Unknown checkout.", error=True), 404)
        state = await run_in_threadpool(server_state, service, session_id)
        if state.get("state") != "server":
            return HTMLResponse(pages.message("Not yet", "Your server is not there yet."), 409)
        ns = str(state["namespace"])

        def issue() -> str | None:
            obj = service.kube.get(API_VERSION, "PersonalMailServer", ns, str(state["name"]))
            mailboxes = ((obj or {}).get("spec") or {}).get("mailboxes") or []
            if not mailboxes:
                return None
            return links.issue(service.kube, ns, mailboxes[0]["address"], settings.link_ttl_seconds)

        token = await run_in_threadpool(issue)
        if token is None:
            return HTMLResponse(
                pages.message(
                    "Link already issued",
                    "A password link was already issued for this server. "
                    "Ask support for a new one.",
                    error=True,
                ),
                409,
            )
        return RedirectResponse(f"/password/{token}", 303)

    async def password_page(request: Request) -> Response:
        token = request.path_params["token"]
        try:
            link, _ = await run_in_threadpool(links.inspect, service.kube, token)
        except links.LinkError as e:
            return HTMLResponse(pages.message("Link not usable", str(e), error=True), 410)
        return HTMLResponse(pages.password_form(token, link.mailbox), headers=_no_store())

    async def password_post(request: Request) -> Response:
        token = request.path_params["token"]
        values = await _form(request)
        try:
            link = await run_in_threadpool(
                links.use,
                service.kube,
                token,
                values.get("password", ""),
                values.get("confirm", ""),
            )
        except links.LinkError as e:
            try:
                current, _ = await run_in_threadpool(links.inspect, service.kube, token)
            except links.LinkError:
                return HTMLResponse(pages.message("Link not usable", str(e), error=True), 410)
            return HTMLResponse(pages.password_form(token, current.mailbox, str(e)), 422)
        return HTMLResponse(
            pages.message("Password set", f"You can now log in as {link.mailbox}."),
            headers=_no_store(),
        )

    async def healthz(request: Request) -> Response:
        return Response("ok")

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

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

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/signup", signup_page, methods=["GET"]),
            Route("/signup", signup_post, methods=["POST"]),
            Route("/signup/return", return_page),
            Route("/signup/status", status_json),
            Route("/signup/password-link", password_link, methods=["POST"]),
            Route("/password/{token}", password_page, methods=["GET"]),
            Route("/password/{token}", password_post, methods=["POST"]),
            Route("/stripe/webhook", webhook, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
    return BodyLimit(app, settings.max_body_bytes, service.metrics.rejected.labels("size").inc)


def _no_store() -> dict[str, str]:
    return {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


async def _sweeper(service: BillingService, every: float) -> None:
    sweep: Callable[[], Awaitable[Any]] = lambda: run_in_threadpool(service.sweep)  # noqa: E731
    while True:
        await asyncio.sleep(every)
        try:
            await sweep()
        except Exception:
            log.exception("sweep failed; next in %.0fs", every)
