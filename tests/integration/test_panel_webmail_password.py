"""The webmail's password change (POST address, current, new to the panel's internal
port) against the real API server, as the customer: a wrong current password, an
unknown address, a weak or missing new one change nothing and answer 4xx with the
message as text/plain (the panel's own messages); a good one is stored as the
panel's form stores it (the panel's Secret, passwordSecretRef, the tenant's hash),
ends the panel sessions of the old password, and the old password no longer works
there; the attempts are limited per address with the login's budget; the pages are
not served on that port."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import httpx
import pytest
from vpes_operator import crypto
from vpes_panel import passwords
from vpes_panel.app import build_apps
from vpes_panel.customer import password_key, user_key
from vpes_panel.settings import PANEL_SECRET
from vpes_panel.webmail_password import CHANGED, MISSING, PATH, WRONG

from tests import panel_web

from . import panel_support
from .operator_support import wait_for
from .panel_support import PanelEnv, Tenant, strong_password

panel_env = panel_support.panel_env


@pytest.fixture(scope="module")
def internal(panel_env: PanelEnv) -> Iterator[str]:
    """The internal port's app, as `vpes-panel --internal-port` serves it (the panel's
    ServiceAccount, the test's settings)."""
    port = panel_web.free_port()
    served = panel_web.Served(build_apps(panel_env.settings, panel_env.sa)[1], port)
    served.start()
    try:
        yield served.url
    finally:
        served.stop()


def change(url: str, address: str, current: str, new: str) -> httpx.Response:
    return httpx.post(
        url + PATH, data={"address": address, "current": current, "new": new}, timeout=30
    )


def stored(env: PanelEnv, t: Tenant, key: str) -> str | None:
    obj = env.admin.get("v1", "Secret", t.namespace, PANEL_SECRET) or {}
    raw = (obj.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else None


def ref_of(env: PanelEnv, t: Tenant, address: str) -> object:
    mailbox = next(m for m in env.server(t)["spec"]["mailboxes"] if m["address"] == address)
    return mailbox["passwordSecretRef"]


def is_text(r: httpx.Response) -> bool:
    return r.headers["content-type"].startswith("text/plain")


def test_refusals_change_nothing_and_say_why(panel_env: PanelEnv, internal: str) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    old = t.passwords[user]
    before = panel_env.server(t)["metadata"]["generation"]
    r = change(internal, user, "not-" + old, strong_password())
    assert (r.status_code, r.text) == (403, WRONG) and is_text(r)
    # An unknown address gets the same answer.
    r = change(internal, f"nobody@{t.domain}", old, strong_password())
    assert (r.status_code, r.text) == (403, WRONG)
    weak = "aaaaaaaaaaaaaaaa"
    with pytest.raises(passwords.WeakPasswordError) as reason:
        passwords.check(weak, weak, context=passwords.context_words(user))
    r = change(internal, user, old, weak)
    assert (r.status_code, r.text) == (422, str(reason.value)) and is_text(r)
    r = change(internal, user, old, "1qaz2wsx3edc")
    assert r.status_code == 422 and "most used and leaked" in r.text
    r = change(internal, user, old, "")
    assert (r.status_code, r.text) == (400, MISSING)
    assert panel_env.server(t)["metadata"]["generation"] == before
    assert stored(panel_env, t, password_key(t.server, user)) is None
    assert ref_of(panel_env, t, user) == {"name": "passwords", "key": user_key(user)}


def test_a_good_change_is_the_panels_own(panel_env: PanelEnv, internal: str) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    old, new = t.passwords[user], strong_password()
    session = panel_env.login(user, old)
    r = change(internal, user.upper(), old, new)  # the address as typed at the login
    assert (r.status_code, r.text) == (200, CHANGED) and is_text(r)
    key = password_key(t.server, user)
    assert ref_of(panel_env, t, user) == {"name": PANEL_SECRET, "key": key}
    hashed = stored(panel_env, t, key)
    assert hashed is not None and crypto.verify_password(new, hashed)
    assert new not in r.text
    # The panel session of the old password has ended.
    r = session.get("/account")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    # The tenant checks logins against that very hash; the panel takes only the new one.
    wait_for(
        lambda: panel_env.logins(t).get(user) == hashed or None,
        "the tenant's hash of the new password",
        60,
    )
    panel_env.login(user, new)
    r = change(internal, user, old, strong_password())
    assert (r.status_code, r.text) == (403, WRONG)


def test_attempts_are_limited_per_address(panel_env: PanelEnv, internal: str) -> None:
    t = panel_env.customer(("owner",))
    owner = t.owner
    budget = panel_env.settings.login_burst
    for _ in range(budget):
        assert change(internal, owner, secrets.token_hex(8), strong_password()).status_code == 403
    r = change(internal, owner, t.passwords[owner], strong_password())
    assert r.status_code == 429 and is_text(r)
    assert r.text.startswith("Too many attempts.") and int(r.headers["retry-after"]) > 0


def test_the_internal_port_serves_nothing_else(panel_env: PanelEnv, internal: str) -> None:
    assert httpx.get(internal + "/healthz").status_code == 200
    assert httpx.get(internal + "/login").status_code == 404
    assert httpx.get(internal + PATH).status_code == 405
    # The public port does not serve the webmail's endpoint.
    assert httpx.post(panel_env.url + PATH, data={"address": "a@b.example"}).status_code in (
        404,
        405,
    )
