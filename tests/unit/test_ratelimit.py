"""Signups per client address: a burst, then one per interval; refused with 429 and a message."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient
from vpes_billing.ratelimit import RateLimit
from vpes_billing.routes import Routes
from vpes_billing.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_per_interval_per_address() -> None:
    clock = Clock()
    limit = RateLimit(burst=3, every=60.0, clock=clock)
    assert [limit.allow("198.51.100.7") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.allow("198.51.100.7") == 60.0
    assert limit.allow("203.0.113.9") == 0.0  # another address has its own bucket
    clock.now += 30
    assert limit.allow("198.51.100.7") == 30.0  # a refused attempt takes nothing
    clock.now += 30
    assert limit.allow("198.51.100.7") == 0.0
    assert limit.allow("198.51.100.7") > 0


def test_the_table_is_bounded() -> None:
    clock = Clock()
    limit = RateLimit(burst=1, every=3600.0, max_clients=2, clock=clock)
    for address in ("a", "b", "c"):
        assert limit.allow(address) == 0.0
    assert limit.allow("c") > 0 and limit.allow("b") > 0
    assert limit.allow("a") == 0.0  # forgotten: the oldest went first


def test_the_signup_form_refuses_a_flood_with_429_and_says_when() -> None:
    settings = Settings(stripe_api_key="sk_test_x", webhook_secret="whsec_x", signup_burst=2)
    routes = Routes(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    app = Starlette(routes=routes.table())
    form: dict[str, Any] = {"plan": "", "email": "a@example.net", "domain": "x.org"}
    with TestClient(app) as client:
        codes = [client.post("/signup", data=form).status_code for _ in range(3)]
        assert codes == [422, 422, 429]  # bad input counts too: each attempt costs
        r = client.post("/signup", data=form)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert "Too many signups from your address" in r.text
        assert 'value="a@example.net"' in r.text  # what was typed is kept
