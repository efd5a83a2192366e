"""My mailbox against the real API server, as the customer: a password change
(a wrong current password or a weak new one changes nothing and says why next to
the field; a good one keeps the session going, ends the others, and is the hash
the tenant checks), the second factor (a wrong code enrols nothing, the right one
does, and the next login asks for a code; the secret never travels in a form),
and a server that requires a second factor sending a user without one to enrol."""

from __future__ import annotations

import base64
import html
import time

import httpx
import pyotp
import pytest
from vpes_operator import API_VERSION, crypto
from vpes_panel import passwords
from vpes_panel.customer import password_key, totp_key, user_key
from vpes_panel.settings import PANEL_SECRET

from tests import panel_web

from . import panel_support
from .operator_support import wait_for
from .panel_support import PanelEnv, Tenant, strong_password

panel_env = panel_support.panel_env


def panel_secret(env: PanelEnv, t: Tenant) -> dict[str, str]:
    obj = env.admin.get("v1", "Secret", t.namespace, PANEL_SECRET) or {}
    return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}


def mailbox(env: PanelEnv, t: Tenant, address: str) -> dict[str, object]:
    found: list[dict[str, object]] = [
        m for m in env.server(t)["spec"]["mailboxes"] if m["address"] == address
    ]
    assert found, address
    return found[0]


def change(c: httpx.Client, current: str, new: str, confirm: str | None = None) -> httpx.Response:
    return panel_web.post(
        c,
        "/account",
        "/account/password",
        current=current,
        password=new,
        confirm=new if confirm is None else confirm,
    )


def test_a_wrong_current_password_or_a_weak_new_one_changes_nothing(panel_env: PanelEnv) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    c = panel_env.login(user, t.passwords[user])
    before = panel_env.server(t)["metadata"]["generation"]
    r = change(c, "not-" + t.passwords[user], strong_password())
    assert r.status_code == 422
    assert panel_web.field_error(r.text, "current") == "This is not your current password."
    weak = "aaaaaaaaaaaaaaaa"
    with pytest.raises(passwords.WeakPasswordError) as reason:
        passwords.check(weak, weak, context=passwords.context_words(user))
    r = change(c, t.passwords[user], weak)
    assert r.status_code == 422
    assert html.unescape(panel_web.field_error(r.text, "password") or "") == str(reason.value)
    assert panel_web.field_error(r.text, "current") is None
    r = change(c, t.passwords[user], strong_password(), confirm="something-else-entirely")
    assert "differ" in (panel_web.field_error(r.text, "password") or "")
    assert panel_env.server(t)["metadata"]["generation"] == before
    assert password_key(t.server, user) not in panel_secret(panel_env, t)
    assert mailbox(panel_env, t, user)["passwordSecretRef"] == {
        "name": "passwords",
        "key": user_key(user),
    }
    assert c.get("/account").status_code == 200


def test_a_new_password_keeps_the_session_ends_the_others_and_is_the_tenants(
    panel_env: PanelEnv,
) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    c = panel_env.login(user, t.passwords[user])
    other = panel_env.login(user, t.passwords[user])
    new = strong_password()
    r = change(c, t.passwords[user], new)
    assert r.status_code == 303 and r.headers["location"] == "/account?done=password"
    page = c.get(r.headers["location"])
    assert page.status_code == 200 and "Your password is changed" in page.text
    key = password_key(t.server, user)
    assert mailbox(panel_env, t, user)["passwordSecretRef"] == {"name": PANEL_SECRET, "key": key}
    stored = panel_secret(panel_env, t)[key]
    assert stored.startswith("{BLF-CRYPT}") and crypto.verify_password(new, stored)
    assert new not in page.text and stored not in page.text
    # The session made with the old password, in another browser, has ended.
    r = other.get("/account")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    # The tenant checks logins against that very hash (the operator takes it as is).
    wait_for(
        lambda: panel_env.logins(t).get(user) == stored or None,
        "the tenant's hash of the new password",
        60,
    )
    panel_env.login(user, new)
    c2 = panel_web.client(panel_env.url)
    r = c2.post(
        "/login",
        data={
            "address": user,
            "password": t.passwords[user],
            "csrf": panel_web.token(c2.get("/login").text),
        },
    )
    assert r.status_code == 401
    # A second change only replaces the stored hash (the mailbox already points at it).
    generation = panel_env.server(t)["metadata"]["generation"]
    newer = strong_password()
    assert change(c, new, newer).status_code == 303
    assert panel_env.server(t)["metadata"]["generation"] == generation
    assert crypto.verify_password(newer, panel_secret(panel_env, t)[key])
    assert c.get("/account").status_code == 200


def secret_of(page: str) -> str:
    start = page.index('id="totp-secret">') + len('id="totp-secret">')
    return page[start : page.index("<", start)].replace(" ", "")


def test_a_second_factor_is_enrolled_with_a_right_code_and_then_asked_at_login(
    panel_env: PanelEnv,
) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    c = panel_env.login(user, t.passwords[user])
    page = c.get("/account").text
    secret = secret_of(page)
    assert "<svg" in page
    assert f'value="{secret}"' not in page  # the secret is in no form
    pending = f"totp-pending.{t.server}.{user_key(user)}"
    assert panel_secret(panel_env, t)[pending] == secret
    assert secret_of(c.get("/account").text) == secret  # a reload shows the same one
    totp = pyotp.TOTP(secret)
    wrong = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    r = panel_web.post(c, "/account", "/account/totp/enrol", code=wrong)
    assert r.status_code == 422 and panel_web.field_error(r.text, "code")
    assert totp_key(t.server, user) not in panel_secret(panel_env, t)
    r = panel_web.post(c, "/account", "/account/totp/enrol", code=totp.now())
    assert r.status_code == 303 and r.headers["location"] == "/account?done=totp"
    stored = panel_secret(panel_env, t)
    assert pending not in stored and secret in stored[totp_key(t.server, user)]
    assert "On: logging in asks" in c.get("/account").text
    # Logging in again asks for a code (the next step's: the one used is spent).
    c2 = panel_web.client(panel_env.url)
    r = c2.post(
        "/login",
        data={
            "address": user,
            "password": t.passwords[user],
            "csrf": panel_web.token(c2.get("/login").text),
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/login/totp"
    assert c2.get("/account").headers["location"] == "/login/totp"
    r = panel_web.post(c2, "/login/totp", "/login/totp", code=totp.at(time.time() + 30))
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert c2.get("/account").status_code == 200


def test_a_server_that_requires_a_second_factor_sends_users_to_enrol_and_keeps_theirs_on(
    panel_env: PanelEnv,
) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    panel_env.admin.request(
        "PATCH",
        f"/apis/{API_VERSION}/namespaces/{t.namespace}/personalmailservers/{t.server}",
        body={"spec": {"panel": {"requireTOTP": True}}},
        content_type="application/merge-patch+json",
    )
    owner = panel_env.login(t.owner, t.passwords[t.owner])
    r = owner.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/account?done=totp-required"
    assert owner.get("/backups").headers["location"] == "/account?done=totp-required"
    page = owner.get("/account?done=totp-required")
    assert page.status_code == 200 and "require a second factor" in page.text
    assert "This server requires one" in page.text
    # Their password form is no way around it.
    r = change(owner, t.passwords[t.owner], strong_password())
    assert r.status_code == 303 and r.headers["location"] == "/account?done=totp-required"
    totp = pyotp.TOTP(secret_of(page.text))
    r = panel_web.post(owner, "/account", "/account/totp/enrol", code=totp.now())
    assert r.status_code == 303
    assert owner.get("/").status_code == 200
    # It cannot be turned off while the server requires it.
    r = panel_web.post(
        owner, "/account", "/account/totp/disable", off_code=totp.at(time.time() + 30)
    )
    assert r.status_code == 403 and 'href="#off_code"' in r.text and 'id="off_code"' in r.text
    assert totp_key(t.server, t.owner) in panel_secret(panel_env, t)
    # The other user, without one, is sent to enrol too.
    c = panel_env.login(user, t.passwords[user])
    assert c.get("/").headers["location"] == "/account?done=totp-required"


def test_a_user_forwards_their_own_mail_keeping_a_copy_or_not(panel_env: PanelEnv) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    c = panel_env.login(user, t.passwords[user])
    page = c.get("/account")
    assert 'action="/account/forwarding"' in page.text
    before = panel_env.server(t)["metadata"]["generation"]

    def forward(targets: str, keep: bool) -> httpx.Response:
        fields = {"targets": targets, **({"keep_copy": "yes"} if keep else {})}
        return panel_web.post(c, "/account", "/account/forwarding", **fields)

    # Bad input: a message next to the field, nothing changed.
    for bad in ("not an address", ", ".join(f"x{i}@elsewhere.example" for i in range(11))):
        r = forward(bad, True)
        assert r.status_code == 422, bad
        assert panel_web.field_error(r.text, "targets"), bad
    assert panel_env.server(t)["metadata"]["generation"] == before
    r = forward("me@elsewhere.example", True)
    assert r.status_code == 303
    forwards = panel_env.server(t)["spec"].get("forwards")
    assert [(f["from"], set(f["to"])) for f in forwards] == [(user, {user, "me@elsewhere.example"})]
    assert "a copy stays here" in c.get("/account").text
    r = forward("me@elsewhere.example", False)
    assert r.status_code == 303
    assert panel_env.server(t)["spec"]["forwards"] == [
        {"from": user, "to": ["me@elsewhere.example"]}
    ]

    # The operator renders it: Provisioned at the forward's generation.
    def provisioned() -> bool | None:
        obj = panel_env.server(t)
        status = obj.get("status") or {}
        return (
            status.get("observedGeneration") == obj["metadata"]["generation"]
            and any(
                x["type"] == "Provisioned" and x["status"] == "True"
                for x in status.get("conditions") or []
            )
        ) or None

    wait_for(provisioned, "the server provisioned with the forward", 60)
    r = forward("", False)
    assert r.status_code == 303 and not panel_env.server(t)["spec"].get("forwards")
