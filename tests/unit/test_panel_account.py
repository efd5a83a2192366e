"""My mailbox, pure: the mailbox as its user sees it (aliases in every domain, quota
use), forwarding typed into one field (addresses checked, the mailbox itself
refused, the limit with and without a copy kept), the spec change it makes, the
operator's own objection to a spec, the requireTOTP gate of every page, and the
calendar and contacts address, shown only where the plan has them."""

from __future__ import annotations

from typing import Any

import pytest
from vpes_operator.models.server import MAX_FORWARD_TARGETS
from vpes_operator.settings import OperatorSettings
from vpes_panel import account_view as av
from vpes_panel import sessions, totp
from vpes_panel.customer import totp_key
from vpes_panel.routes import setup
from vpes_panel.sessions import STAGE_IN, Session
from vpes_panel.web import ENV, Form, Panel

pytestmark = pytest.mark.unit

ME = "alice@example.org"


def spec(**extra: Any) -> dict[str, Any]:
    return {
        "plan": "basic",
        "owner": {"email": "owner@example.net"},
        "domains": ["example.org", "example.net"],
        "mailboxes": [
            {"address": ME, "displayName": "Alice", "aliases": ["info", "a@example.org"]},
            {"address": "bob@example.org"},
        ],
        **extra,
    }


def test_the_mailbox_shows_its_aliases_in_every_domain_and_its_quota_use() -> None:
    status = {
        "usage": {
            "mailboxUsage": [
                {"address": ME, "quotaBytes": 1 << 30, "usedBytes": 1 << 28, "messages": 12},
                {"address": "bob@example.org", "quotaBytes": 1 << 30},
            ]
        }
    }
    view = av.mailbox(spec(), status, ME)
    assert view is not None
    assert view.display_name == "Alice"
    assert view.aliases == ("a@example.org", "info@example.net", "info@example.org")
    assert view.quota == av.Quota("256.0 MiB", "1.0 GiB", 12, 25)
    bob = av.mailbox(spec(), status, "bob@example.org")
    assert bob is not None and bob.quota is not None
    assert bob.quota.percent is None and bob.quota.used == "not measured yet"
    assert av.mailbox(spec(), {}, "nobody@example.org") is None
    assert av.mailbox(spec(), {}, ME).quota is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "keep", "expected"),
    [
        ("", True, ()),
        ("  ", False, ()),
        ("me@elsewhere.net", True, ("me@elsewhere.net",)),
        (
            "Me@Elsewhere.NET, b@x.org;c@y.org\nb@x.org",
            False,
            ("me@elsewhere.net", "b@x.org", "c@y.org"),
        ),
        ("bob@example.org", True, ("bob@example.org",)),  # another mailbox of the server
    ],
)
def test_forward_targets_are_read_lowercased_once_each(
    text: str, keep: bool, expected: tuple[str, ...]
) -> None:
    assert av.parse_targets(text, ME, keep) == expected


@pytest.mark.parametrize(
    ("text", "keep", "says"),
    [
        ("not-an-address", True, "is not a mail address"),
        ("a@b", True, "is not a mail address"),
        ('"x"@example.net', True, "is not a mail address"),
        ("x@[192.0.2.1]", True, "is not a mail address"),
        (ME, True, "Keep a copy"),
        (ME.upper(), False, "Keep a copy"),
        (",".join(f"u{i}@x.org" for i in range(MAX_FORWARD_TARGETS)), True, "at most 9"),
        (",".join(f"u{i}@x.org" for i in range(MAX_FORWARD_TARGETS + 1)), False, "at most 10"),
    ],
)
def test_bad_forward_targets_say_what_to_fix(text: str, keep: bool, says: str) -> None:
    with pytest.raises(av.FieldError, match=says):
        av.parse_targets(text, ME, keep)


def test_ten_targets_fit_when_no_copy_is_kept() -> None:
    ten = ",".join(f"u{i}@x.org" for i in range(MAX_FORWARD_TARGETS))
    assert len(av.parse_targets(ten, ME, False)) == MAX_FORWARD_TARGETS


@pytest.mark.parametrize(
    ("targets", "keep", "forwards"),
    [
        (("x@y.org",), True, [{"from": ME, "to": ["x@y.org", ME]}]),
        (("x@y.org", "z@y.org"), False, [{"from": ME, "to": ["x@y.org", "z@y.org"]}]),
        ((), True, []),
    ],
)
def test_forwarding_replaces_only_the_mailboxs_own_forward(
    targets: tuple[str, ...], keep: bool, forwards: list[dict[str, Any]]
) -> None:
    other = {"from": "sales@example.org", "to": ["x@y.org"]}
    s = spec(forwards=[other, {"from": ME, "to": ["old@y.org"]}])
    av.set_forwarding(s, ME, targets, keep)
    assert s["forwards"] == [other, *forwards]
    shown = av.forwarding(s, ME)
    assert shown == av.Forwarding(targets, keep and bool(targets))


def test_a_forward_without_the_mailbox_among_its_targets_keeps_no_copy() -> None:
    s = spec(forwards=[{"from": ME, "to": ["x@y.org"]}])
    assert av.forwarding(s, ME) == av.Forwarding(("x@y.org",), False)
    assert av.forwarding(s, "bob@example.org") == av.Forwarding((), False)


def test_the_operators_objection_to_a_spec_is_found_before_writing() -> None:
    assert av.check_spec(spec()) is None
    stolen = spec()
    stolen["mailboxes"][0]["aliases"] = ["bob@example.org"]
    assert "already a mailbox" in (av.check_spec(stolen) or "")
    # Whatever the operator renders today, the probe agrees with a real check.
    own = spec(forwards=[{"from": ME, "to": ["x@y.org", ME]}])
    assert av.forwarding_supported() == (av.check_spec(own) is None)


class FakeCustomer:
    """The two reads the gate makes, from fixed values."""

    def __init__(self, spec: dict[str, Any], hashed: str, enrolled: bool) -> None:
        self.spec, self.hashed, self.server = spec, hashed, "mail"
        self.secret = totp.Enrolment("S" * 32, 0).dump() if enrolled else None

    def get(self) -> dict[str, Any]:
        return {"spec": self.spec}

    def current_hash(self, spec: dict[str, Any], address: str) -> str:
        return self.hashed

    def stored(self, key: str) -> str | None:
        return self.secret if key == totp_key("mail", ME) else None


@pytest.mark.parametrize(
    ("require", "enrolled", "path", "fp", "expected"),
    [
        (False, False, "/", "h1", None),
        (True, True, "/", "h1", None),
        (True, False, "/", "h1", "enrol"),
        (True, False, "/domains", "h1", "enrol"),
        (True, False, "/account/password", "h1", "enrol"),
        (True, False, "/account", "h1", None),
        (True, False, "/account/totp/enrol", "h1", None),
        (False, False, "/", "other", "ended"),
        (True, False, "/account", "other", "ended"),
    ],
)
def test_a_server_that_requires_totp_sends_users_without_one_to_enrol(
    require: bool, enrolled: bool, path: str, fp: str, expected: str | None
) -> None:
    c = FakeCustomer(spec(panel={"requireTOTP": require}), "h1", enrolled)
    s = sessions.Session("ns", "mail", ME, False, sessions.fingerprint(fp), "in", 0, 0, "t")
    assert Panel._gate(c, s, path) == expected  # type: ignore[arg-type]


MAIL = OperatorSettings(edge_web_host="Web.Edge.Example.")


@pytest.mark.parametrize(
    ("plan", "address"),
    [
        ({"features": {"calendar": True}}, "https://web.edge.example/dav/"),
        ({"features": {"calendar": False, "webmail": True}}, None),
        ({"features": {}}, None),
        ({}, None),  # no such plan (plan_of gives {})
        ({"features": {"calendar": "yes"}}, None),  # not what the CRD stores
    ],
)
def test_the_calendar_address_only_where_the_plan_has_calendar(
    plan: dict[str, Any], address: str | None
) -> None:
    assert setup.calendar_address(MAIL, plan) == address


def render_account(calendar_url: str | None) -> str:
    return ENV.get_template("account.html").render(
        title="My mailbox",
        session=Session("ns", "mail", ME, False, "f", STAGE_IN, 0.0, 0.0, "token"),
        form=Form(),
        view=av.mailbox(spec(), {}, ME),
        generation=1,
        forwarding_supported=True,
        enrolled=True,
        require_totp=False,
        secret="",
        secret_text="",
        qr="",
        done="",
        openpgp_key=None,
        mail_servers=[],
        profile_url="/account/setup.mobileconfig",
        calendar_url=calendar_url,
    )


def test_the_page_shows_the_calendar_address_and_the_login_only_with_calendar() -> None:
    page = render_account("https://web.edge.example/dav/")
    assert '<code id="calendar-url">https://web.edge.example/dav/</code>' in page
    assert f"Log in with your mail address, {ME}, and its password" in page
    page = render_account(None)
    assert "calendar-section" not in page and "/dav/" not in page
