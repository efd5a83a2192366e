"""Billing's web front and settings: the body limit, log redaction, secrets kept out of
repr, settings from the environment (a bad value named, not a traceback)."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from vpes_billing.logsafe import redact
from vpes_billing.settings import Settings
from vpes_billing.web import BodyLimit

from tests.unit.billing_support import SECRET, SESSION, settings

pytestmark = pytest.mark.unit

pytestmark = pytest.mark.unit


def test_settings_keep_secrets_out_of_repr() -> None:
    text = repr(settings())
    assert SECRET not in text and "sk_test_x" not in text


def test_body_limit() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> int:
        sent: list[MutableMapping[str, Any]] = []
        queue = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]

        async def receive() -> dict[str, Any]:
            return queue.pop(0) if queue else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
        await BodyLimit(app, 10)(scope, receive, send)
        return int(sent[0]["status"])

    assert asyncio.run(call([(b"content-length", b"5")], [b"12345"])) == 200
    assert asyncio.run(call([(b"content-length", b"11")], [b"x" * 11])) == 413
    assert asyncio.run(call([], [b"x" * 6, b"x" * 6])) == 413


def test_body_limit_through_starlette_counts_every_refusal() -> None:
    """Declared and streamed (chunked) bodies over the limit: 413, never Starlette's
    500, and each refusal counted."""

    async def echo(request: Request) -> Response:
        return Response(str(len(await request.body())))

    refused: list[int] = []
    app = BodyLimit(
        Starlette(routes=[Route("/", echo, methods=["POST"])]), 10, lambda: refused.append(1)
    )

    def chunks(n: int) -> Any:
        for _ in range(n):
            yield b"x" * 4

    with TestClient(app) as client:
        assert client.post("/", content=b"x" * 10).text == "10"
        assert client.post("/", content=chunks(2)).text == "8"
        assert refused == []
        assert client.post("/", content=b"x" * 11).status_code == 413
        assert len(refused) == 1
        r = client.post("/", content=chunks(3))
        assert r.status_code == 413 and r.text == "request body too large"
        assert len(refused) == 2


TOKEN = "vpes-c-0123456789abcdef." + "S3cr3t_" * 6 + "x"
KEY = "K3y-_" * 8 + "abc"


@pytest.mark.parametrize(
    "line",
    [
        f'127.0.0.1:5 - "GET /password/{TOKEN} HTTP/1.1" 200',
        f'127.0.0.1:5 - "POST /password/{TOKEN}?x=1 HTTP/1.1" 422',
        f'127.0.0.1:5 - "GET /signup/return?session_id={SESSION} HTTP/1.1" 200',
        f'"GET /signup/status?foo=1&session_id={SESSION}&b=2 HTTP/1.1"',
        f"looked up {SESSION} and {TOKEN}",
        f'127.0.0.1:5 - "GET /signup/return?key={KEY} HTTP/1.1" 200',
        f'"GET /signup/status?foo=1&key={KEY}&b=2 HTTP/1.1"',
        f"success_url: https://billing.test/signup/return?key={KEY}",
    ],
)
def test_redact_removes_tokens_and_session_ids(line: str) -> None:
    clean = redact(line)
    assert TOKEN.split(".")[1] not in clean and SESSION not in clean and KEY not in clean
    assert "[redacted]" in clean
    assert redact("GET /healthz HTTP/1.1 200") == "GET /healthz HTTP/1.1 200"


def test_redact_removes_stripe_keys_an_error_echoes() -> None:
    line = "Authorization was 'Bearer sk_test_4eC39Hq'; rk_live_abc whsec_0123abc_x"
    assert redact(line) == (
        "Authorization was 'Bearer sk_test_[redacted]'; rk_live_[redacted] whsec_[redacted]"
    )


# -- settings from the environment: a bad value is named, not a traceback ---------------


@pytest.fixture
def billing_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_x")
    for name in ("VPES_BILLING_SIGNUP_BURST", "VPES_BILLING_SIGNUP_EVERY_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_signup_rate_settings_from_env(billing_env: pytest.MonkeyPatch) -> None:
    defaults = Settings.from_env()
    assert (defaults.signup_burst, defaults.signup_every_seconds) == (5, 120.0)
    billing_env.setenv("VPES_BILLING_SIGNUP_BURST", " 12 ")
    billing_env.setenv("VPES_BILLING_SIGNUP_EVERY_SECONDS", "7.5")
    configured = Settings.from_env()
    assert (configured.signup_burst, configured.signup_every_seconds) == (12, 7.5)
    billing_env.setenv("VPES_BILLING_SIGNUP_BURST", "")
    assert Settings.from_env().signup_burst == 5


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("VPES_BILLING_SIGNUP_BURST", "five", "must be a whole number, not 'five'"),
        ("VPES_BILLING_SIGNUP_BURST", "2.5", "must be a whole number, not '2.5'"),
        ("VPES_BILLING_SIGNUP_BURST", "0", "must be 1 or more, not '0'"),
        ("VPES_BILLING_SIGNUP_BURST", "-3", "must be 1 or more, not '-3'"),
        ("VPES_BILLING_SIGNUP_EVERY_SECONDS", "2m", "must be more than zero seconds, not '2m'"),
        ("VPES_BILLING_SIGNUP_EVERY_SECONDS", "0", "must be more than zero seconds, not '0'"),
        ("VPES_BILLING_SIGNUP_EVERY_SECONDS", "nan", "must be more than zero seconds, not 'nan'"),
        ("VPES_BILLING_GRACE_SECONDS", "7d", "must be zero or more seconds, not '7d'"),
        ("VPES_BILLING_GRACE_SECONDS", "-1", "must be zero or more seconds, not '-1'"),
    ],
)
def test_a_bad_setting_names_its_variable(
    billing_env: pytest.MonkeyPatch, name: str, raw: str, message: str
) -> None:
    billing_env.setenv(name, raw)
    with pytest.raises(SystemExit) as info:
        Settings.from_env()
    assert str(info.value) == f"{name} {message}"
