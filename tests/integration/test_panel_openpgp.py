"""My mailbox's OpenPGP public key against the real API server, as a mailbox user: a
key made with gpg is published in one spec change (as gpg exported it, its fingerprint
and user ID shown back), is what the Web Key Directory would serve for the address,
and is withdrawn again; a secret key, another address's key or a damaged one is
refused next to the field, never shown back, and changes nothing; a stale form is a
conflict. The API server's own rules refuse a private key block (without quoting it)
and a 51st key of a server, in words."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError
from vpes_panel import openpgp

from tests import panel_web
from tests.openpgp_keys import GnuPG, gnupg

from . import panel_support
from .operator_support import condition, wait_for
from .panel_support import PanelEnv, Tenant

panel_env = panel_support.panel_env


@pytest.fixture(scope="module")
def gpg() -> Iterator[GnuPG]:
    with gnupg() as g:
        yield g


def key_of(env: PanelEnv, t: Tenant, address: str) -> object:
    mine = [m for m in env.server(t)["spec"]["mailboxes"] if m["address"] == address]
    assert mine, address
    return mine[0].get("openpgpKey")


def publish(c: httpx.Client, text: str, **fields: str) -> httpx.Response:
    return panel_web.post(
        c, "/account", "/account/openpgp", openpgp_action="publish", openpgp_key=text, **fields
    )


def never_logged(text: str) -> None:
    """The key's body joins what the panel's log is searched for at the end."""
    body = [line for line in text.splitlines() if len(line) == 64]
    assert body, "no body line to search the log for"
    panel_support.PASSWORDS.update(body)


def test_a_mailbox_user_publishes_and_withdraws_their_key(panel_env: PanelEnv, gpg: GnuPG) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    fingerprint = gpg.make(f"User Example <{user}>")
    exported = gpg.export(user)
    never_logged(exported)
    c = panel_env.login(user, t.passwords[user])
    page = c.get("/account")
    assert '<textarea id="openpgp_key" name="openpgp_key"' in page.text
    assert "None published." in page.text

    # A browser sends the textarea's lines with CRLF.
    r = publish(c, exported.replace("\n", "\r\n"))
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/account?done=openpgp"
    assert key_of(panel_env, t, user) == exported, "stored as gpg exported it"
    assert key_of(panel_env, t, f"owner@{t.domain}") is None
    page = c.get("/account?done=openpgp")
    assert "Your OpenPGP key is published" in page.text
    grouped = " ".join(fingerprint[i : i + 4] for i in range(0, 40, 4))
    assert f"<code>{grouped}</code>" in page.text
    assert f"User Example &lt;{user}&gt;" in page.text
    assert exported.splitlines()[2] not in page.text, "the page shows the fingerprint only"

    # The operator takes the spec as it is (the key is not rendered into the tenant).
    def provisioned() -> bool | None:
        obj = panel_env.server(t)
        status = obj.get("status") or {}
        done = condition(obj, "Provisioned") or {}
        at = status.get("observedGeneration") == obj["metadata"]["generation"]
        return (at and done.get("status") == "True") or None

    wait_for(provisioned, "the server provisioned with the key", 60)

    # What the Web Key Directory serves for the address, by either method.
    keys = openpgp.published_keys([panel_env.server(t)])
    local = user.split("@")[0]
    binary = gpg.gpg("--export", user)
    assert keys == {(t.domain, openpgp.wkd_hash(local)): (binary, local)}
    advanced = f"/.well-known/openpgpkey/{t.domain}/hu/{openpgp.wkd_hash(local)}?l={local}"
    assert openpgp.wkd_lookup(keys, f"openpgpkey.{t.domain}", advanced) == binary

    r = panel_web.post(c, "/account", "/account/openpgp", openpgp_action="withdraw")
    assert r.status_code == 303 and r.headers["location"] == "/account?done=openpgp-off"
    assert key_of(panel_env, t, user) is None
    page = c.get("/account?done=openpgp-off")
    assert "Your OpenPGP key is withdrawn" in page.text and "None published." in page.text
    assert openpgp.published_keys([panel_env.server(t)]) == {}


def test_bad_keys_are_refused_next_to_the_field_and_change_nothing(
    panel_env: PanelEnv, gpg: GnuPG
) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    gpg.make(f"User <{user}>")
    gpg.make(f"Someone Else <else@{t.domain}>")
    secret = gpg.export(user, secret=True)
    never_logged(secret)
    c = panel_env.login(user, t.passwords[user])
    before = panel_env.server(t)["metadata"]["generation"]
    good = gpg.export(user)
    damaged = good.replace(good.splitlines()[3], good.splitlines()[3][::-1])
    for text, says in [
        (secret, "private (secret) key"),
        (gpg.export(f"else@{t.domain}"), f"None of this key's user IDs is {user}"),
        (damaged, "damaged"),
        ("", "Paste your public key"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI me@laptop", "Paste one public key block"),
    ]:
        r = publish(c, text)
        assert r.status_code == 422, says
        shown = panel_web.field_error(r.text, "openpgp_key")
        assert shown and says in shown, (says, shown)
        assert 'aria-invalid="true"' in r.text
    r = publish(c, secret)
    assert secret.splitlines()[3] not in r.text, "a secret key is never shown back"
    forged = c.post("/account/openpgp", data={"openpgp_action": "publish", "openpgp_key": good})
    assert forged.status_code == 403, "no CSRF token: refused"
    assert panel_env.server(t)["metadata"]["generation"] == before
    assert key_of(panel_env, t, user) is None


def test_a_stale_form_is_refused_next_to_the_key(panel_env: PanelEnv, gpg: GnuPG) -> None:
    t = panel_env.customer(("owner", "user"))
    user = f"user@{t.domain}"
    gpg.make(f"<{user}>")
    c = panel_env.login(user, t.passwords[user])
    stale = str(panel_env.server(t)["metadata"]["generation"])
    assert publish(c, gpg.export(user)).status_code == 303
    generation = panel_env.server(t)["metadata"]["generation"]
    r = panel_web.post(
        c, "/account", "/account/openpgp", openpgp_action="withdraw", generation=stale
    )
    assert r.status_code == 409
    assert "Someone changed this server" in (panel_web.field_error(r.text, "openpgp_key") or "")
    assert panel_env.server(t)["metadata"]["generation"] == generation
    assert key_of(panel_env, t, user) is not None


def refusal(env: PanelEnv, t: Tenant, spec: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as refused:
        env.admin.apply(
            {
                "apiVersion": API_VERSION,
                "kind": "PersonalMailServer",
                "metadata": {"name": t.server, "namespace": t.namespace},
                "spec": spec,
            }
        )
    assert refused.value.status == 422
    return refused.value


def test_the_api_server_refuses_a_private_key_block_in_words(
    panel_env: PanelEnv, gpg: GnuPG
) -> None:
    t = panel_env.tenants[0] if panel_env.tenants else panel_env.customer(("owner", "user"))
    owner = t.owner
    gpg.make(f"<{owner}>")
    secret = gpg.export(owner, secret=True)
    never_logged(secret)
    spec = copy.deepcopy(panel_env.server(t)["spec"])
    mine = next(m for m in spec["mailboxes"] if m["address"] == owner)

    mine["openpgpKey"] = secret
    e = refusal(panel_env, t, spec)
    assert "this is a private (secret) key: never publish it" in e.body
    assert "must be one ASCII-armored OpenPGP public key" in e.body
    assert all(line not in e.body for line in secret.splitlines()[2:-2]), "quoted the key"

    # A public block hiding a private one is refused too.
    public = gpg.export(owner)
    mine["openpgpKey"] = public + secret + public
    assert "this is a private (secret) key" in refusal(panel_env, t, spec).body

    mine["openpgpKey"] = "mQINBF..."
    assert "must be one ASCII-armored OpenPGP public key" in refusal(panel_env, t, spec).body
    mine["openpgpKey"] = "x" * 8193
    assert "8192" in refusal(panel_env, t, spec).body
    assert key_of(panel_env, t, owner) is None


def test_the_api_server_allows_fifty_keys_on_a_server_and_not_more(panel_env: PanelEnv) -> None:
    domain = f"k{uuid.uuid4().hex[:8]}.example"
    block = f"{openpgp.OPENPGP_HEADER}\n\nAAAA\n{openpgp.OPENPGP_FOOTER}\n"

    def server(keys: int) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "PersonalMailServer",
            "metadata": {"name": "keys", "namespace": "default"},
            "spec": {
                "plan": panel_env.plan,
                "owner": {"email": "owner@example.net"},
                "domains": [domain],
                "mailboxes": [
                    {"address": f"u{i}@{domain}", "openpgpKey": block} for i in range(keys)
                ],
            },
        }

    panel_env.admin.create(server(50), dry_run=True)
    with pytest.raises(ApiError) as refused:
        panel_env.admin.create(server(51), dry_run=True)
    assert refused.value.status == 422
    assert "at most 50 mailboxes of a server may publish an OpenPGP key" in refused.value.body
