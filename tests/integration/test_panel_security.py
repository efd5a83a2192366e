"""The panel's security against the real API server: one customer's session reaches
nothing of another's (and the API server itself refuses the panel's impersonated
client), forms without the session's CSRF token or from another origin change
nothing, logins are throttled, a mailbox user cannot open the administrator's
pages, a changed password ends older sessions, and no page or log holds a password
or a hash."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import ApiError
from vpes_panel.customer import user_key

from tests import panel_web

from . import panel_support
from .operator_support import wait_for
from .panel_support import PanelEnv

panel_env = panel_support.panel_env

ADMIN_PAGES = ["/", "/domains", "/mailboxes", "/addresses", "/backups", "/plan"]


def _status(call: Callable[..., object], *args: object) -> int:
    """The API server's answer to `call(*args)`: 200, or the error's status."""
    try:
        call(*args)
    except ApiError as e:
        return e.status
    return 200


def test_the_api_server_keeps_the_panel_inside_the_customers_namespace(
    panel_env: PanelEnv,
) -> None:
    a, b = panel_env.customer(), panel_env.customer()
    as_a = panel_env.sa.impersonate(f"system:serviceaccount:{a.namespace}:vpes-customer")
    # What the panel needs of A's, as A:
    assert as_a.get(API_VERSION, "PersonalMailServer", a.namespace, a.server) is not None
    assert as_a.get("v1", "Secret", a.namespace, "vpes-logins") is not None
    # Nothing of B's, and none of A's other Secrets (its DKIM and TLS keys, the relay's
    # password, the Secret of the passwords the admin set):
    for ns, kind, name in [
        (b.namespace, "PersonalMailServer", b.server),
        (b.namespace, "Secret", "vpes-logins"),
        (b.namespace, "Secret", "vpes-panel"),
        (a.namespace, "Secret", f"{a.server}-credentials"),
        (a.namespace, "Secret", "passwords"),
    ]:
        version = API_VERSION if kind == "PersonalMailServer" else "v1"
        status = _status(as_a.get, version, kind, ns, name)
        assert status == 403, f"{kind} {ns}/{name} as A: {status}"
    patch = {"metadata": {"labels": {"x": "y"}}}
    status = _status(
        as_a.patch_metadata,
        API_VERSION,
        "PersonalMailServer",
        b.namespace,
        b.server,
        patch["metadata"],
    )
    assert status == 403
    # The panel can act as no one else: not another ServiceAccount of A's, not a user.
    for user in (f"system:serviceaccount:{a.namespace}:default", "admin", "system:admin"):
        other = panel_env.sa.impersonate(user)
        status = _status(other.get, API_VERSION, "PersonalMailServer", a.namespace, a.server)
        assert status == 403, f"impersonating {user}: {status}"
    # Without impersonation the panel's own account reads no customer's server or Secret.
    assert _status(panel_env.sa.get, "v1", "Secret", a.namespace, "vpes-logins") == 403


def test_a_session_of_one_customer_shows_and_changes_nothing_of_another(
    panel_env: PanelEnv,
) -> None:
    a, b = panel_env.customer(), panel_env.customer()
    before = panel_env.server(b)
    c = panel_env.login(a.owner, a.passwords[a.owner])
    for path in [*ADMIN_PAGES, "/account", f"/domains/{b.domain}"]:
        page = c.get(path)
        assert b.domain not in page.text, f"{path} shows B's domain"
        assert b.namespace not in page.text
    # Forms naming B's things act on A's server (or refuse): B's stays as it was.
    for action, fields in [
        (f"/domains/{b.domain}/remove", {"confirm_domain": b.domain}),
        (f"/mailboxes/{b.owner}/delete", {"confirm_address": b.owner}),
        ("/domains", {"domain": b.domain}),
    ]:
        r = panel_web.post(c, "/domains", action, **fields)
        assert r.status_code in (404, 422), (action, r.status_code)
    assert "Another mail server on this platform" in (panel_web.field_error(r.text, "domain") or "")
    assert b.domain not in panel_env.server(a)["spec"]["domains"]
    after = panel_env.server(b)
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


def test_forms_need_the_sessions_csrf_token_and_the_panels_origin(panel_env: PanelEnv) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    other = panel_env.customer()
    d = panel_env.login(other.owner, other.passwords[other.owner])
    before = panel_env.server(t)["metadata"]["generation"]
    foreign = panel_web.token(d.get("/domains").text)
    for data, headers in [
        ({"domain": "new.example"}, {}),
        ({"domain": "new.example", "csrf": "x"}, {}),
        ({"domain": "new.example", "csrf": foreign}, {}),
        (
            {"domain": "new.example", "csrf": panel_web.token(c.get("/domains").text)},
            {"Origin": "https://evil.example"},
        ),
    ]:
        r = c.post("/domains", data=data, headers=headers)
        assert r.status_code == 403, (data, headers, r.status_code)
    assert panel_env.server(t)["metadata"]["generation"] == before
    # The login form too: its token is bound to the browser's cookie.
    fresh = panel_web.client(panel_env.url)
    r = fresh.post(
        "/login", data={"address": t.owner, "password": t.passwords[t.owner], "csrf": "made-up"}
    )
    assert r.status_code == 403 and "vpes_session" not in r.cookies
    # Logging out too: another site's form cannot end the session.
    for data, headers in [
        ({}, {}),
        ({"csrf": foreign}, {}),
        ({"csrf": panel_web.token(c.get("/").text)}, {"Origin": "https://evil.example"}),
    ]:
        assert c.post("/logout", data=data, headers=headers).status_code == 403
    assert c.get("/").status_code == 200, "still logged in"
    r = c.post("/logout", data={"csrf": panel_web.token(c.get("/").text)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert c.get("/").status_code in (302, 303), "logged out"


def test_logins_are_throttled_per_address_with_a_retry_after(panel_env: PanelEnv) -> None:
    t = panel_env.customer(("owner",))
    c = panel_web.client(panel_env.url)
    statuses = []
    for _ in range(panel_env.settings.login_burst + 2):
        r = c.post(
            "/login",
            data={
                "address": t.owner,
                "password": "wrong-password-x",
                "csrf": panel_web.token(c.get("/login").text),
            },
        )
        statuses.append(r.status_code)
    assert statuses[0] == 401 and statuses[-1] == 429, statuses
    assert "Too many attempts" in (panel_web.field_error(r.text, "address") or "")
    assert int(r.headers["retry-after"]) > 0
    # Even the right password waits now: a guesser learns nothing by trying it.
    r = c.post(
        "/login",
        data={
            "address": t.owner,
            "password": t.passwords[t.owner],
            "csrf": panel_web.token(c.get("/login").text),
        },
    )
    assert r.status_code == 429


def test_wrong_password_and_unknown_address_get_the_same_answer(panel_env: PanelEnv) -> None:
    t = panel_env.customer(("owner",))
    c = panel_web.client(panel_env.url)
    answers = []
    for address in (t.owner, f"nobody@{t.domain}", "nobody@unknown.example"):
        r = c.post(
            "/login",
            data={
                "address": address,
                "password": "wrong-password-x",
                "csrf": panel_web.token(c.get("/login").text),
            },
        )
        answers.append((r.status_code, panel_web.field_error(r.text, "password")))
    assert len(set(answers)) == 1, answers


def test_a_mailbox_user_manages_only_their_own_mailbox(panel_env: PanelEnv) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    c = panel_env.login(user, t.passwords[user])
    for path in ADMIN_PAGES[1:]:
        assert c.get(path).status_code == 403, path
    assert c.get("/").status_code == 303  # to their own mailbox
    assert c.get("/account").status_code == 200
    before = panel_env.server(t)["metadata"]["generation"]
    r = panel_web.post(c, "/account", "/domains", domain="new.example")
    assert r.status_code == 403
    assert panel_env.server(t)["metadata"]["generation"] == before


def test_no_page_holds_a_password_or_a_hash_and_a_new_password_ends_old_sessions(
    panel_env: PanelEnv,
) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    hashes = panel_env.logins(t)
    for path in [*ADMIN_PAGES, "/account"]:
        text = c.get(path).text
        for secret in [*t.passwords.values(), *hashes.values()]:
            assert secret not in text, f"{path} holds a password or hash"
    cookie = c.cookies.get("vpes_session") or ""
    assert all(h not in cookie for h in hashes.values())
    # The administrator sets the owner's password with kubectl: older sessions end.
    new = "x" + t.passwords[t.owner]
    panel_env.admin.request(
        "PATCH",
        f"/api/v1/namespaces/{t.namespace}/secrets/passwords",
        body={"stringData": {user_key(t.owner): new}},
        content_type="application/merge-patch+json",
    )
    # ... and says so on the server (the operator watches no Secret).
    panel_env.admin.patch_metadata(
        API_VERSION,
        "PersonalMailServer",
        t.namespace,
        t.server,
        {"annotations": {naming.ANNOTATION_PASSWORDS_CHANGED: "1"}},
    )
    wait_for(
        lambda: panel_env.logins(t)[t.owner] != hashes[t.owner] or None,
        "the operator to take the new password",
        60,
    )
    r = c.get("/")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


@pytest.mark.parametrize("path", ["/", "/domains", "/account", "/login/totp"])
def test_pages_need_a_session(panel_env: PanelEnv, path: str) -> None:
    r = panel_web.client(panel_env.url).get(path)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
