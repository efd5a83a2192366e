"""The administrator's pages against the real API server: every form's bad input
(empty, too long, invalid, a foreign domain, over the plan's limit, a duplicate, a
second tab's stale edit) shows its message next to the field and leaves the
server's spec and generation as they were (read with the admin client); good adds,
edits and deletes go through; "Check again" sets the operator's annotation."""

from __future__ import annotations

import html
import uuid
from typing import Any

import httpx
import pytest
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError
from vpes_panel.customer import password_key
from vpes_panel.settings import PANEL_SECRET

from tests import panel_web

from . import panel_support
from .panel_support import PanelEnv, Tenant, strong_password

panel_env = panel_support.panel_env


def snapshot(env: PanelEnv, t: Tenant) -> tuple[int, dict[str, Any]]:
    obj = env.server(t)
    return int(obj["metadata"]["generation"]), obj["spec"]


def refused(
    env: PanelEnv, t: Tenant, r: httpx.Response, field: str, says: str, status: int = 422
) -> None:
    """The form came back with `says` next to `field`, in the error summary too."""
    assert r.status_code == status, f"{r.status_code}: {r.text[:300]}"
    message = panel_web.field_error(r.text, field)
    assert message is not None, f"no message next to {field}"
    message = html.unescape(message)
    assert says in message, f"next to {field}: {message!r}"
    assert 'class="error-summary"' in r.text and f'href="#{field}"' in r.text


def test_domain_form_refuses_bad_input_and_changes_nothing(panel_env: PanelEnv) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    cases = [
        ("", "Enter a domain name"),
        ("localhost", "whole domain name"),
        ("a..b.example", "not a valid domain name"),
        ("x" * 300 + ".example", "at most 253"),
        (t.domain.upper(), "already one of this server's domains"),
    ]
    for typed, says in cases:
        before = snapshot(panel_env, t)
        r = panel_web.post(c, "/domains", "/domains", domain=typed)
        refused(panel_env, t, r, "domain", says)
        assert snapshot(panel_env, t) == before, typed
    # The plan allows 2: one more is fine, a third is refused naming the plan.
    r = panel_web.post(c, "/domains", "/domains", domain=f"second-{t.domain}")
    assert r.status_code == 303
    before = snapshot(panel_env, t)
    r = panel_web.post(c, "/domains", "/domains", domain=f"third-{t.domain}")
    refused(panel_env, t, r, "domain", "Your plan (Panel test) allows 2 domains")
    assert snapshot(panel_env, t) == before


def test_a_domain_round_trip_idna_records_check_and_typed_removal(panel_env: PanelEnv) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    tag = uuid.uuid4().hex[:6]
    r = panel_web.post(c, "/domains", "/domains", domain=f"Bücher-{tag}.example")
    assert r.status_code == 303 and r.headers["location"] == "/domains?done=added"
    spec = panel_env.server(t)["spec"]
    added = next(d for d in spec["domains"] if d != t.domain)
    assert added.startswith("xn--bcher-") and added.endswith(".example"), added
    listing = c.get("/domains?done=added").text
    assert f"bücher-{tag}.example" in listing and "The domain was added" in listing
    page = c.get(f"/domains/{added}")
    assert page.status_code == 200 and "Check again" in page.text
    # A mailbox in the new domain, to be removed with it.
    pw = strong_password()
    r = panel_web.post(c, "/mailboxes", "/mailboxes", local="dora", domain=added,
                       password=pw, confirm=pw)  # fmt: skip
    assert r.status_code == 303, panel_web.field_error(r.text, "local")
    # Check again: the operator's annotation, a new value each time.
    r = panel_web.post(c, f"/domains/{added}", f"/domains/{added}/check")
    assert r.status_code == 303
    first = panel_env.server(t)["metadata"]["annotations"]["vpes.io/check-dns"]
    panel_web.post(c, f"/domains/{added}", f"/domains/{added}/check")
    assert panel_env.server(t)["metadata"]["annotations"]["vpes.io/check-dns"] != first
    # The removal names what is lost and wants the name typed.
    confirm = c.get(f"/domains/{added}/remove").text
    assert f"dora@{added}" in confirm and "will be refused" in confirm
    before = snapshot(panel_env, t)
    page_path = f"/domains/{added}/remove"
    r = panel_web.post(c, page_path, page_path, confirm_domain="something-else.example")
    refused(panel_env, t, r, "confirm_domain", "to confirm")
    assert snapshot(panel_env, t) == before
    r = panel_web.post(c, page_path, page_path, confirm_domain=f"bücher-{tag}.example")
    assert r.status_code == 303
    spec = panel_env.server(t)["spec"]
    assert spec["domains"] == [t.domain]
    assert all(m["address"].endswith(t.domain) for m in spec["mailboxes"])


def test_the_own_domain_and_the_last_domain_are_not_removed(panel_env: PanelEnv) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    path = f"/domains/{t.domain}/remove"
    assert "Your own mailbox is in this domain" in c.get(path).text
    before = snapshot(panel_env, t)
    r = c.post(path, data={"csrf": panel_web.token(c.get("/domains").text),
                           "generation": str(before[0]), "confirm_domain": t.domain})  # fmt: skip
    assert r.status_code == 422
    assert snapshot(panel_env, t) == before


def test_mailbox_form_refuses_bad_input_and_changes_nothing(panel_env: PanelEnv) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    pw = strong_password()
    good = {"local": "erin", "domain": t.domain, "password": pw, "confirm": pw}
    cases: list[tuple[dict[str, str], str, str]] = [
        ({"local": ""}, "local", "Enter the part"),
        ({"local": "Er in"}, "local", "lowercase letters and digits"),
        ({"local": "e" * 65}, "local", "at most 64"),
        ({"local": "owner"}, "local", f"already the mailbox owner@{t.domain}"),
        ({"domain": "foreign.example"}, "domain", "Choose one of this server's domains"),
        ({"quota": "lots"}, "quota", "Enter a size"),
        ({"quota": "20Ti"}, "quota", "between 1Mi"),
        ({"display_name": "x" * 201}, "display_name", "at most 200"),
        ({"password": "", "confirm": ""}, "password", "Enter a password"),
        ({"password": "password123", "confirm": "password123"}, "password", "12 characters"),
        ({"password": "Password1234", "confirm": "Password1234"}, "password", "leaked"),
        ({"password": "a" * 16, "confirm": "a" * 16}, "password", "until it passes"),
        ({"confirm": pw + "x"}, "password", "differ"),
    ]
    for change, field, says in cases:
        before = snapshot(panel_env, t)
        r = panel_web.post(c, "/mailboxes", "/mailboxes", **{**good, **change})
        refused(panel_env, t, r, field, says)
        assert 'type="password" id="password" name="password" value' not in r.text
        assert snapshot(panel_env, t) == before, change
    # The plan allows 4 mailboxes: two more, then the fifth is refused.
    for local in ("erin", "frank"):
        r = panel_web.post(c, "/mailboxes", "/mailboxes", **{**good, "local": local})
        assert r.status_code == 303, panel_web.field_error(r.text, "local")
    before = snapshot(panel_env, t)
    r = panel_web.post(c, "/mailboxes", "/mailboxes", **{**good, "local": "gina"})
    refused(panel_env, t, r, "local", "allows 4 mailboxes")
    assert snapshot(panel_env, t) == before


def test_a_mailbox_round_trip(panel_env: PanelEnv) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    pw = strong_password()
    address = f"hana@{t.domain}"
    r = panel_web.post(c, "/mailboxes", "/mailboxes", local="hana", domain=t.domain,
                       display_name="Hana", quota="300Mi", password=pw, confirm=pw)  # fmt: skip
    assert r.status_code == 303
    entry = next(m for m in panel_env.server(t)["spec"]["mailboxes"] if m["address"] == address)
    key = password_key(t.server, address)
    assert entry["passwordSecretRef"] == {"name": PANEL_SECRET, "key": key}
    assert entry["quota"] == "300Mi" and entry["displayName"] == "Hana"
    assert pw not in c.get("/mailboxes").text
    panel_env.login(address, pw)  # the new mailbox logs in with what was set
    # Edit: bad quota and a foreign alias change nothing; then a good edit.
    path = f"/mailboxes/{address}"
    before = snapshot(panel_env, t)
    r = panel_web.post(c, path, path, display_name="Hana", quota="0", aliases="")
    refused(panel_env, t, r, "quota", "between 1Mi")
    r = panel_web.post(c, path, path, display_name="Hana", quota="", aliases="x@foreign.example")
    refused(panel_env, t, r, "aliases", "not one of this server's domains")
    assert snapshot(panel_env, t) == before
    pw2 = strong_password()
    r = panel_web.post(c, path, path, display_name="Hana B", quota="1Gi",
                       aliases=f"hb@{t.domain}\nhanab", password=pw2, confirm=pw2)  # fmt: skip
    assert r.status_code == 303
    entry = next(m for m in panel_env.server(t)["spec"]["mailboxes"] if m["address"] == address)
    assert entry["aliases"] == [f"hb@{t.domain}", "hanab"] and entry["quota"] == "1Gi"
    panel_env.login(address, pw2)
    # Delete: a wrong typed address changes nothing; the right one deletes.
    dpath = f"/mailboxes/{address}/delete"
    assert "all its mail" in c.get(dpath).text
    before = snapshot(panel_env, t)
    r = panel_web.post(c, dpath, dpath, confirm_address="someone@else.example")
    refused(panel_env, t, r, "confirm_address", "to confirm")
    assert snapshot(panel_env, t) == before
    r = panel_web.post(c, dpath, dpath, confirm_address=address)
    assert r.status_code == 303
    assert address not in [m["address"] for m in panel_env.server(t)["spec"]["mailboxes"]]


def test_the_last_administrator_keeps_the_flag_and_admins_are_made(panel_env: PanelEnv) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    path = f"/mailboxes/{t.owner}"
    before = snapshot(panel_env, t)
    r = panel_web.post(c, path, path, display_name="", quota="", aliases="", admin="")
    refused(panel_env, t, r, "admin", "only administrator")
    assert snapshot(panel_env, t) == before
    user = next(a for a in t.passwords if a != t.owner)
    upath = f"/mailboxes/{user}"
    r = panel_web.post(c, upath, upath, display_name="", quota="", aliases="", admin="yes")
    assert r.status_code == 303
    assert user in panel_env.server(t)["spec"]["panel"]["admins"]
    r = panel_web.post(c, "/mailboxes", "/mailboxes/second-factor", require_totp="yes")
    assert r.status_code == 303
    assert panel_env.server(t)["spec"]["panel"]["requireTOTP"] is True


def test_address_forms_refuse_bad_input_and_change_nothing(panel_env: PanelEnv) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    cases: list[tuple[str, dict[str, str], str, str]] = [
        ("aliases", {"alias_mailbox": t.owner, "alias": ""}, "alias", "Enter the alias"),
        ("aliases", {"alias_mailbox": t.owner, "alias": "a@foreign.example"}, "alias",
         "not one of this server's domains"),
        ("aliases", {"alias_mailbox": t.owner, "alias": "user"}, "alias", "already the mailbox"),
        ("aliases", {"alias_mailbox": t.owner, "alias": "a" * 70}, "alias", "at most 64"),
        ("aliases", {"alias_mailbox": "nobody@x.example", "alias": "z"}, "alias_mailbox",
         "Choose one"),
        ("forwards", {"forward_from": "", "forward_to": "a@b.example"}, "forward_from", "Enter"),
        ("forwards", {"forward_from": "s@foreign.example", "forward_to": "a@b.example"},
         "forward_from", "not one of this server's domains"),
        ("forwards", {"forward_from": f"owner@{t.domain}", "forward_to": "a@b.example"},
         "forward_from", "already the mailbox"),
        ("forwards", {"forward_from": f"s@{t.domain}", "forward_to": ""}, "forward_to",
         "at least one"),
        ("forwards", {"forward_from": f"s@{t.domain}", "forward_to": "not an address"},
         "forward_to", "whole address"),
        ("forwards", {"forward_from": f"s@{t.domain}", "forward_to": "a b@c.example"},
         "forward_to", "not an address we accept"),
        ("forwards", {"forward_from": f"s@{t.domain}",
                      "forward_to": "\n".join(f"u{i}@b.example" for i in range(11))},
         "forward_to", "at most 10"),
        ("catch-all", {"catch_domain": "foreign.example", "catch_to": t.owner}, "catch_domain",
         "Choose one"),
        ("catch-all", {"catch_domain": t.domain, "catch_to": "x@y.example"}, "catch_to",
         "Choose one"),
    ]  # fmt: skip
    for kind, fields, field, says in cases:
        before = snapshot(panel_env, t)
        r = panel_web.post(c, "/addresses", f"/addresses/{kind}", **fields)
        refused(panel_env, t, r, field, says)
        assert snapshot(panel_env, t) == before, fields


def test_aliases_forwards_and_catch_alls_round_trip(panel_env: PanelEnv) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    user = next(a for a in t.passwords if a != t.owner)
    post = panel_web.post
    assert post(c, "/addresses", "/addresses/aliases", alias_mailbox=user,
                alias=f"info@{t.domain}").status_code == 303  # fmt: skip
    assert post(c, "/addresses", "/addresses/forwards", forward_from=f"sales@{t.domain}",
                forward_to="a@b.example\nc@d.example").status_code == 303  # fmt: skip
    assert post(c, "/addresses", "/addresses/catch-all", catch_domain=t.domain,
                catch_to=user).status_code == 303  # fmt: skip
    spec = panel_env.server(t)["spec"]
    assert (
        f"info@{t.domain}" in next(m for m in spec["mailboxes"] if m["address"] == user)["aliases"]
    )
    assert spec["forwards"] == [{"from": f"sales@{t.domain}", "to": ["a@b.example", "c@d.example"]}]
    assert spec["catchAll"] == [{"domain": t.domain, "to": user}]
    # A second catch-all for the domain, and the mailbox a catch-all delivers to, refused.
    before = snapshot(panel_env, t)
    r = post(c, "/addresses", "/addresses/catch-all", catch_domain=t.domain, catch_to=t.owner)
    refused(panel_env, t, r, "catch_domain", "has a catch-all already")
    assert "Change or remove it first" in c.get(f"/mailboxes/{user}/delete").text
    assert snapshot(panel_env, t) == before
    # Removals say where the mail goes, then remove.
    q = f"/addresses/aliases/remove?mailbox={user}&alias=info@{t.domain}"
    assert f"will go to {user}" in c.get(q).text
    r = post(c, q, "/addresses/aliases/remove", mailbox=user, alias=f"info@{t.domain}")
    assert r.status_code == 303
    q = f"/addresses/forwards/remove?from=sales@{t.domain}"
    assert "a@b.example" in c.get(q).text
    assert (
        post(c, q, "/addresses/forwards/remove", **{"from": f"sales@{t.domain}"}).status_code == 303
    )
    q = f"/addresses/catch-all/remove?domain={t.domain}"
    assert "will be refused" in c.get(q).text
    assert post(c, q, "/addresses/catch-all/remove", domain=t.domain).status_code == 303
    spec = panel_env.server(t)["spec"]
    assert not spec.get("forwards") and not spec.get("catchAll")
    assert f"info@{t.domain}" not in (
        next(m for m in spec["mailboxes"] if m["address"] == user).get("aliases") or []
    )


@pytest.mark.parametrize(
    ("page", "action", "fields", "field"),
    [
        ("/domains", "/domains", {"domain": "stale.example"}, "domain"),
        ("/mailboxes", "/mailboxes/second-factor", {"require_totp": "yes"}, "require_totp"),
        ("/addresses", "/addresses/forwards",
         {"forward_from": "stale@{domain}", "forward_to": "a@b.example"}, "forward_from"),
    ],
)  # fmt: skip
def test_a_stale_form_is_a_conflict_and_changes_nothing(
    panel_env: PanelEnv, page: str, action: str, fields: dict[str, str], field: str
) -> None:
    t = panel_env.customer()
    c = panel_env.login(t.owner, t.passwords[t.owner])
    form = c.get(page).text
    stale = panel_web.generation(form)
    # Meanwhile, someone else (kubectl, a second tab) changes the server. The operator
    # may write it between this read and the PUT (its status): read again then.
    path = panel_env.admin.resource(API_VERSION, "PersonalMailServer").path(t.namespace, t.server)
    for attempt in range(5):
        obj = panel_env.server(t)
        obj["spec"]["mailboxes"][0]["displayName"] = "Changed elsewhere"
        obj.pop("status", None)
        try:
            panel_env.admin.request("PUT", path, body=obj)
            break
        except ApiError as e:
            if e.status != 409 or attempt == 4:
                raise
    before = snapshot(panel_env, t)
    data = {k: v.format(domain=t.domain) for k, v in fields.items()}
    r = c.post(action, data={"csrf": panel_web.token(form), "generation": stale, **data})
    refused(panel_env, t, r, field, "Someone changed this server's settings", status=409)
    assert snapshot(panel_env, t) == before
    assert panel_web.generation(r.text) == str(before[0]), "the page now holds the current one"
