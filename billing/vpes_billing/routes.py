"""The routes of the billing service: Stripe webhooks, signup, the return page, one-time
password links. Each reads the request, calls the service (in a thread: it blocks on
the Kubernetes and Stripe APIs) and renders a page; `web.build_app` assembles them."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError
from vpes_operator.conditions import find
from vpes_operator.models.conditions import ConditionType
from vpes_operator.models.server import PersonalMailServerStatus

from . import links, pages, signup, tenant
from . import naming as n
from .ratelimit import RateLimit
from .service import BillingService
from .stripe_gateway import StripeUnavailableError

log = logging.getLogger("vpes.billing")
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def server_state(service: BillingService, key: str) -> dict[str, object]:
    """What the return page and /signup/status show of the server of the signup whose
    key is `key` (found by the key's hash: the cluster never holds the key itself)."""
    digest = n.signup_key_digest(key)
    selector = f"{n.LABEL_SIGNUP_KEY}={digest}"
    servers = service.kube.list(API_VERSION, "PersonalMailServer", labels=selector)
    if servers:
        obj = servers[0]
        status = PersonalMailServerStatus.model_validate(obj.get("status") or {})
        ready = find(status.conditions, ConditionType.READY)
        return {
            "state": "server",
            "namespace": obj["metadata"]["namespace"],
            "name": obj["metadata"]["name"],
            "phase": status.phase,
            "ready": bool(ready and ready.status == "True"),
            "message": status.message or (ready.message if ready else ""),
            "endpoints": status.endpoints.wire() if status.endpoints else {},
        }
    refusal = service.ledger.refusal(digest)
    if refusal is not None:
        return {"state": "refused", "message": refusal}
    return {"state": "waiting", "message": "Waiting for the payment to be confirmed."}


async def _form(request: Request) -> dict[str, str]:
    form = await request.form(max_files=0, max_fields=20)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _key(value: str | None) -> str | None:
    """A well-formed signup key (n.new_signup_key), else None."""
    return value if value and n.SIGNUP_KEY.fullmatch(value) else None


def _page(title: str, text: str, status: int = 200, *, error: bool = False) -> HTMLResponse:
    return HTMLResponse(pages.message(title, text, error=error), status)


class Routes:
    """The request handlers of one billing service."""

    def __init__(self, service: BillingService) -> None:
        self.service = service
        self.settings = service.settings
        self.signups = RateLimit(self.settings.signup_burst, self.settings.signup_every_seconds)

    def table(self) -> list[Route]:
        return [
            Route("/", self.index),
            Route("/signup", self.signup_page, methods=["GET"]),
            Route("/signup", self.signup_post, methods=["POST"]),
            Route("/signup/return", self.return_page),
            Route("/signup/status", self.status_json),
            Route("/signup/password-link", self.password_link, methods=["POST"]),
            Route("/password/{token}", self.password_page, methods=["GET"]),
            Route("/password/{token}", self.password_post, methods=["POST"]),
            Route("/stripe/webhook", self.webhook, methods=["POST"]),
            Route("/healthz", self.healthz),
            Route("/metrics", self.metrics),
        ]

    async def webhook(self, request: Request) -> Response:
        payload = await request.body()
        try:
            event = self.service.stripe.verify(payload, request.headers.get("stripe-signature"))
        except ValueError as e:
            self.service.metrics.rejected.labels("signature").inc()
            log.warning("webhook refused: %s", e)
            return JSONResponse({"error": str(e)}, 400)
        try:
            outcome = await run_in_threadpool(self.service.handle, event)
        except (ApiError, StripeUnavailableError) as e:
            log.error("event %s: temporary failure, Stripe will retry: %s", event.get("id"), e)
            return JSONResponse({"error": "temporary failure"}, 503)
        # A failed event is answered 500 so that Stripe delivers it again (see service).
        return JSONResponse(
            {"outcome": outcome.outcome, "message": outcome.message},
            500 if outcome.retry else 200,
        )

    async def index(self, request: Request) -> Response:
        plans = await run_in_threadpool(lambda: tenant.plans_by_price(self.service.kube).values())
        return HTMLResponse(pages.plans(sorted(plans, key=lambda p: p.name)))

    async def signup_page(self, request: Request) -> Response:
        plan = request.query_params.get("plan", "")
        return HTMLResponse(pages.signup_form(plan, self.settings.provider_domain, {}))

    async def signup_post(self, request: Request) -> Response:
        values = await _form(request)
        wait = self.signups.allow(request.client.host if request.client else "")
        if wait:
            page = pages.signup_form(
                values.get("plan", ""),
                self.settings.provider_domain,
                values,
                f"Too many signups from your address. Try again in {wait:.0f} seconds.",
            )
            return HTMLResponse(page, 429, headers={"Retry-After": str(int(wait) + 1)})
        key = n.new_signup_key()
        try:
            form = signup.parse(self.settings, values)
            session = await run_in_threadpool(
                signup.start, self.service.kube, self.service.stripe, self.settings, form, key
            )
        except signup.SignupError as e:
            page = pages.signup_form(
                values.get("plan", ""), self.settings.provider_domain, values, str(e)
            )
            return HTMLResponse(page, 409 if "already served" in str(e) else 422)
        except StripeUnavailableError as e:
            log.error("signup: %s", e)
            return _page("Try again", "Payment is unavailable.", 503, error=True)
        return RedirectResponse(session.url or f"/signup/return?key={key}", 303)

    async def return_page(self, request: Request) -> Response:
        key = _key(request.query_params.get("key"))
        if not key:
            return _page("Not found", "Unknown checkout.", 404, error=True)
        state = await run_in_threadpool(server_state, self.service, key)
        return HTMLResponse(pages.status(state, key), headers=NO_STORE)

    async def status_json(self, request: Request) -> Response:
        key = _key(request.query_params.get("key"))
        if not key:
            return JSONResponse({"error": "unknown checkout"}, 404)
        state = await run_in_threadpool(server_state, self.service, key)
        return JSONResponse(state, headers=NO_STORE)

    def _issue_link(self, state: dict[str, object]) -> str | None:
        """A one-time password link for the server's first mailbox (None: issued before)."""
        ns = str(state["namespace"])
        obj = self.service.kube.get(API_VERSION, "PersonalMailServer", ns, str(state["name"]))
        mailboxes: list[dict[str, Any]] = ((obj or {}).get("spec") or {}).get("mailboxes") or []
        if not mailboxes:
            return None
        address = mailboxes[0]["address"]
        return links.issue(self.service.kube, ns, address, self.settings.link_ttl_seconds)

    async def password_link(self, request: Request) -> Response:
        key = _key((await _form(request)).get("key"))
        if not key:
            return _page("Not found", "Unknown checkout.", 404, error=True)
        state = await run_in_threadpool(server_state, self.service, key)
        if state.get("state") != "server":
            return _page("Not yet", "Your server is not there yet.", 409)
        token = await run_in_threadpool(self._issue_link, state)
        if token is None:
            return _page(
                "Link already issued",
                "A password link was already issued for this server. Ask support for a new one.",
                409,
                error=True,
            )
        return RedirectResponse(f"/password/{token}", 303)

    async def password_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            link, _ = await run_in_threadpool(links.inspect, self.service.kube, token)
        except links.LinkError as e:
            return _page("Link not usable", str(e), 410, error=True)
        return HTMLResponse(pages.password_form(token, link.mailbox), headers=NO_STORE)

    async def password_post(self, request: Request) -> Response:
        token = request.path_params["token"]
        values = await _form(request)
        kube = self.service.kube
        try:
            link = await run_in_threadpool(
                links.use, kube, token, values.get("password", ""), values.get("confirm", "")
            )
        except links.LinkError as e:
            try:
                current, _ = await run_in_threadpool(links.inspect, kube, token)
            except links.LinkError:
                return _page("Link not usable", str(e), 410, error=True)
            return HTMLResponse(pages.password_form(token, current.mailbox, str(e)), 422)
        return HTMLResponse(
            pages.message("Password set", f"You can now log in as {link.mailbox}."),
            headers=NO_STORE,
        )

    async def healthz(self, request: Request) -> Response:
        return Response("ok")

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.service.registry), media_type=CONTENT_TYPE_LATEST)
