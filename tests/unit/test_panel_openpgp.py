"""My mailbox's OpenPGP key, the panel's side: the spec change that publishes or
withdraws it (other mailboxes untouched), the server's room for one more key said for a
mailbox user, the published key as its user reads it (gpg reads a key made here), the
API server's refusals next to the key's field, and the form on the page."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from vpes_operator.models.server import MAX_OPENPGP_KEYS, PersonalMailServerSpec
from vpes_panel import account_view as av
from vpes_panel import openpgp
from vpes_panel import openpgp_view as ov
from vpes_panel.forms import field_for
from vpes_panel.routes.account import OPENPGP_FIELDS
from vpes_panel.sessions import STAGE_IN, Session
from vpes_panel.web import ENV, Form

from tests.openpgp_keys import gnupg

pytestmark = pytest.mark.unit

ME = "alice@example.org"


@pytest.fixture(scope="module")
def armored() -> Iterator[dict[str, str]]:
    with gnupg() as g:
        g.make(f"Alice <{ME}>")
        g.make("Old <old@example.org>", expire="1d", when="20200101T000000")
        yield {"good": g.export(ME), "expired": g.export("old@example.org")}


def spec(*mailboxes: dict[str, Any]) -> dict[str, Any]:
    return {
        "plan": "basic",
        "owner": {"email": "owner@example.net"},
        "domains": ["example.org"],
        "mailboxes": [{"address": ME}, *mailboxes],
    }


def test_publish_and_withdraw_change_only_my_mailbox(armored: dict[str, str]) -> None:
    key = openpgp.check_key(armored["good"], ME).armored
    s = spec({"address": "bob@example.org", "openpgpKey": key})
    assert ov.stored_key(s, ME) is None
    ov.set_key(s, ME, key)
    assert ov.stored_key(s, ME) == key
    parsed = PersonalMailServerSpec.model_validate(s)
    assert parsed.mailboxes[0].openpgp_key == key
    ov.set_key(s, ME, None)
    assert "openpgpKey" not in s["mailboxes"][0]
    assert ov.stored_key(s, "bob@example.org") == key, "another mailbox's key stays"
    assert ov.stored_key(s, "nobody@example.org") is None


def test_the_servers_room_for_one_more_key() -> None:
    full = [{"address": f"u{i}@example.org", "openpgpKey": "k"} for i in range(MAX_OPENPGP_KEYS)]
    refused = ov.no_room(spec(*full), ME)
    assert refused is not None
    assert f"already publishes {MAX_OPENPGP_KEYS} OpenPGP keys" in refused
    assert "administrators" in refused
    assert ov.no_room(spec(*full[1:]), ME) is None
    mine_among_them = spec(*full[1:])
    mine_among_them["mailboxes"][0]["openpgpKey"] = "k"
    assert ov.no_room(mine_among_them, ME) is None, "replacing my own key takes no room"


def test_the_published_key_as_its_user_reads_it(armored: dict[str, str]) -> None:
    now = datetime.now(UTC)
    key = openpgp.inspect(armored["good"])
    shown = ov.published(armored["good"], ME, now)
    assert shown.fingerprint == key.grouped_fingerprint and len(shown.fingerprint) == 49
    assert shown.user_ids == (f"Alice <{ME}>",)
    assert key.expires is not None and shown.expires == key.expires.date().isoformat()
    assert shown.warning == ""
    later = ov.published(armored["good"], ME, now + timedelta(days=400))
    assert later.warning.startswith("This key has expired.")
    assert "expired" in ov.published(armored["expired"], "old@example.org", now).warning
    assert (
        "None of this key's user IDs" in ov.published(armored["good"], "x@example.org", now).warning
    )
    broken = ov.published("-----BEGIN PGP PUBLIC KEY BLOCK-----\nnope", ME, now)
    assert broken.fingerprint == "" and broken.warning.startswith(
        "The published key cannot be read"
    )


@pytest.mark.parametrize(
    "path",
    ["spec.mailboxes[0].openpgpKey", "spec.mailboxes", "spec.somethingElse", ""],
)
def test_the_api_servers_refusals_go_next_to_the_key(path: str) -> None:
    assert field_for(path, OPENPGP_FIELDS, "openpgp_key") == "openpgp_key"


def render_account(key: ov.PublishedKey | None, form: Form) -> str:
    view = av.mailbox(spec(), {}, ME)
    session = Session("ns", "mail", ME, False, "f", STAGE_IN, 0.0, 0.0, "token")
    return ENV.get_template("account.html").render(
        title="My mailbox",
        session=session,
        form=form,
        view=view,
        generation=3,
        forwarding_supported=False,
        enrolled=True,
        require_totp=True,
        secret="",
        secret_text="",
        qr="",
        done="",
        openpgp_key=key,
        mail_servers=[],
        profile_url="/account/setup.mobileconfig",
        calendar_url=None,
    )


def test_the_form_on_the_page() -> None:
    page = render_account(None, Form())
    assert 'action="/account/openpgp"' in page
    assert '<label for="openpgp_key">Your OpenPGP public key' in page
    assert "None published." in page and "Withdraw my key" not in page
    key = ov.PublishedKey("ABCD EF01", (f"Alice <{ME}>",), "2031-01-01", "This key has expired.")
    error = Form(values={"openpgp_key": "x"}, errors={"openpgp_key": "Paste <one> key."})
    page = render_account(key, error)
    assert '<td id="openpgp-fingerprint"><code>ABCD EF01</code></td>' in page
    assert "Alice &lt;alice@example.org&gt;" in page
    assert 'id="openpgp-warning"><strong>This key has expired.</strong>' in page
    assert (
        '<span class="error-message" id="openpgp_key-error">Paste &lt;one&gt; key.</span>' in page
    )
    assert 'name="openpgp_action" value="withdraw"' in page and "Withdraw my key" in page
    assert "A new public key, to publish instead" in page
