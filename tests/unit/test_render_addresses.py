"""The tenant configuration renderer: where every address goes (Postfix's virtual
tables, aliases, catch-alls, sender logins) and the quotas that go with them."""

from __future__ import annotations

import re

import pytest
from vpes_operator.render import render_config, render_passwd

from . import render_support
from .render_support import ctx_of, main_cf, make_spec, table

pytestmark = pytest.mark.unit
hashes = render_support.hashes
rendered = render_support.rendered

# --- where every address goes -----------------------------------------------------


def test_domains_are_the_virtual_mailbox_domains(rendered: dict[str, str]) -> None:
    params = main_cf(rendered["postfix-main.cf"])
    assert params["virtual_mailbox_domains"] == "example.net example.org"
    assert params["mydestination"] == ""
    assert params["virtual_alias_domains"] == ""
    assert params["relay_domains"] == ""


def test_every_mailbox_is_a_virtual_mailbox(rendered: dict[str, str]) -> None:
    assert table(rendered["postfix-vmailbox"]) == {
        "alice@example.org": "OK",
        "bob@example.net": "OK",
        "carol@example.org": "OK",
    }


def test_virtual_alias_table(rendered: dict[str, str]) -> None:
    assert table(rendered["postfix-virtual"]) == {
        # alice: bare "info" and "postmaster" in both domains, one full address
        "a@example.net": "alice@example.org",
        "info@example.net": "alice@example.org, bob@example.net",
        "info@example.org": "alice@example.org, bob@example.net",
        "postmaster@example.net": "alice@example.org",
        "postmaster@example.org": "alice@example.org",
        # bob: bare "b" in both domains
        "b@example.net": "bob@example.net",
        "b@example.org": "bob@example.net",
        # the forward, targets sorted
        "sales@example.org": "bob@example.net, x@elsewhere.example",
    }


def test_sender_logins_cover_own_address_and_aliases_only(rendered: dict[str, str]) -> None:
    logins = table(rendered["postfix-sender-login"])
    assert logins["alice@example.org"] == "alice@example.org"
    assert logins["a@example.net"] == "alice@example.org"
    assert logins["info@example.org"] == "alice@example.org, bob@example.net"
    assert logins["b@example.org"] == "bob@example.net"
    assert logins["carol@example.org"] == "carol@example.org"
    assert "sales@example.org" not in logins  # a forward is nobody's to send as
    assert set(logins) == {
        "a@example.net",
        "alice@example.org",
        "b@example.net",
        "b@example.org",
        "bob@example.net",
        "carol@example.org",
        "info@example.net",
        "info@example.org",
        "postmaster@example.net",
        "postmaster@example.org",
    }


@pytest.mark.parametrize(
    ("domains", "alias", "expected"),
    [
        (["one.example"], "info", {"info@one.example"}),
        (["one.example", "two.example"], "info", {"info@one.example", "info@two.example"}),
        (
            ["c.example", "a.example", "b.example"],
            "hello",
            {"hello@a.example", "hello@b.example", "hello@c.example"},
        ),
        (["one.example", "two.example"], "info@two.example", {"info@two.example"}),
    ],
)
def test_bare_alias_expands_to_every_domain(
    domains: list[str], alias: str, expected: set[str]
) -> None:
    spec = make_spec(
        domains=domains,
        mailboxes=[{"address": f"me@{domains[0]}", "aliases": [alias]}],
        forwards=[],
    )
    ctx = ctx_of(spec)
    assert set(ctx.mailboxes[0].aliases) == expected
    virtual = table(render_config(ctx)["postfix-virtual"])
    for addr in expected:
        assert virtual[addr] == f"me@{domains[0]}"


def test_bare_alias_yields_to_mailboxes_forwards_and_full_aliases() -> None:
    spec = make_spec(
        domains=["a.example", "b.example", "c.example"],
        mailboxes=[
            {"address": "me@a.example", "aliases": ["shared"]},
            {"address": "shared@b.example"},
            {"address": "you@a.example", "aliases": ["shared@a.example"]},
        ],
        forwards=[{"from": "shared@c.example", "to": ["out@elsewhere.example"]}],
    )
    virtual = table(render_config(ctx_of(spec))["postfix-virtual"])
    assert virtual["shared@a.example"] == "you@a.example"  # the full alias wins
    assert "shared@b.example" not in virtual  # a mailbox
    assert virtual["shared@c.example"] == "out@elsewhere.example"  # the forward


def test_own_address_as_alias_is_ignored() -> None:
    spec = make_spec(
        domains=["a.example"],
        mailboxes=[{"address": "me@a.example", "aliases": ["me", "me@a.example"]}],
        forwards=[],
    )
    ctx = ctx_of(spec)
    assert ctx.mailboxes[0].aliases == ()
    assert "me@a.example" not in table(render_config(ctx)["postfix-virtual"])


def test_postmaster_goes_to_the_owner_where_the_spec_defines_none() -> None:
    spec = make_spec(
        domains=["a.example", "b.example", "c.example"],
        mailboxes=[
            {"address": "me@a.example", "aliases": ["postmaster@a.example"]},
            {"address": "postmaster@b.example"},
        ],
        forwards=[],
    )
    ctx = ctx_of(spec)
    virtual = table(render_config(ctx)["postfix-virtual"])
    assert virtual["postmaster@a.example"] == "me@a.example"
    assert "postmaster@b.example" not in virtual
    assert virtual["postmaster@c.example"] == "owner@contact.example"
    assert [v.kind for v in ctx.virtual_aliases if v.address == "postmaster@c.example"] == [
        "postmaster"
    ]


def test_no_catch_all_by_default(rendered: dict[str, str]) -> None:
    assert make_spec().catch_all == []
    assert ctx_of().catch_alls == ()
    virtual = table(rendered["postfix-virtual"])
    assert not [k for k in virtual if k.startswith("@")]
    assert not [k for k, v in virtual.items() if k == v]  # no identity entries either


def test_catch_all_takes_unknown_addresses_of_its_domain_only() -> None:
    spec = make_spec(catchAll=[{"domain": "example.net", "to": "carol@example.org"}])
    ctx = ctx_of(spec)
    assert [(c.address, c.targets) for c in ctx.catch_alls] == [
        ("@example.net", ("carol@example.org",))
    ]
    virtual = table(render_config(ctx)["postfix-virtual"])
    assert virtual["@example.net"] == "carol@example.org"
    # Postfix tries @domain for every address without an entry of its own, so a
    # mailbox of the caught domain maps to itself (and keeps its +details)...
    assert virtual["bob@example.net"] == "bob@example.net"
    # ...while aliases, postmaster and forwards keep their targets, and the
    # other domain gets neither a catch-all nor identity entries.
    assert virtual["a@example.net"] == "alice@example.org"
    assert virtual["info@example.net"] == "alice@example.org, bob@example.net"
    assert virtual["postmaster@example.net"] == "alice@example.org"
    assert "@example.org" not in virtual
    assert "alice@example.org" not in virtual and "carol@example.org" not in virtual
    # A catch-all is nobody's to send as.
    logins = table(render_config(ctx)["postfix-sender-login"])
    assert not [k for k in logins if k.startswith("@")]
    assert logins["bob@example.net"] == "bob@example.net"


def test_catch_all_of_every_domain_is_sorted() -> None:
    spec = make_spec(
        catchAll=[
            {"domain": "example.org", "to": "bob@example.net"},
            {"domain": "example.net", "to": "bob@example.net"},
        ]
    )
    ctx = ctx_of(spec)
    assert [c.address for c in ctx.catch_alls] == ["@example.net", "@example.org"]
    identities = [v.address for v in ctx.virtual_aliases if v.kind == "mailbox"]
    assert identities == ["alice@example.org", "bob@example.net", "carol@example.org"]


def test_context_lists_forwards_and_aliases() -> None:
    ctx = ctx_of()
    assert [f.address for f in ctx.forwards] == ["sales@example.org"]
    assert ctx.forwards[0].targets == ("bob@example.net", "x@elsewhere.example")
    assert "info@example.org" in [a.address for a in ctx.aliases]
    assert ctx.domains == ("example.net", "example.org")


# --- sizes in bytes ------------------------------------------------------------------


def test_quotas_and_message_size_are_bytes(
    rendered: dict[str, str], hashes: dict[str, str]
) -> None:
    ctx = ctx_of()
    quotas = {m.address: m.quota_bytes for m in ctx.mailboxes}
    assert quotas == {
        "alice@example.org": 1024**3,
        "bob@example.net": 512 * 1024**2,  # the plan's default
        "carol@example.org": 300_000,
    }
    passwd = render_passwd(ctx, hashes)
    for addr, quota in quotas.items():
        assert re.search(
            rf"^{re.escape(addr)}:\{{BLF-CRYPT\}}\$2b\$[^:]+::::::"
            rf"userdb_quota_rule=\*:bytes={quota}$",
            passwd,
            re.M,
        )
    size = str(25 * 1024**2)
    assert main_cf(rendered["postfix-main.cf"])["message_size_limit"] == size
    dovecot = rendered["dovecot.conf"]
    assert f"quota_max_mail_size = {size}\n" in dovecot
    assert f"quota_rule = *:bytes={512 * 1024**2}\n" in dovecot


def test_quota_is_looked_up_once_per_recipient(rendered: dict[str, str]) -> None:
    # quota-status answers Postfix at RCPT time; LMTP does not ask again, and
    # the Maildir++ backend reads one small file instead of every folder's index.
    dovecot = rendered["dovecot.conf"]
    assert "lmtp_rcpt_check_quota = no\n" in dovecot
    assert "  quota = maildir:User quota\n" in dovecot
    assert "executable = quota-status -p postfix\n" in dovecot
    params = main_cf(rendered["postfix-main.cf"])
    for restrictions in ("smtpd_recipient_restrictions", "mua_recipient_restrictions"):
        assert "check_policy_service unix:/run/vpes/dovecot/quota-status" in params[restrictions]


def test_a_mailbox_forwards_its_own_mail_with_or_without_a_copy() -> None:
    spec = make_spec(
        forwards=[
            {"from": "bob@example.net", "to": ["bob@example.net", "bob@home.example"]},
            {"from": "carol@example.org", "to": ["carol@home.example"]},
        ],
        catchAll=[{"domain": "example.net", "to": "alice@example.org"}],
    )
    ctx = ctx_of(spec)
    virtual = table(render_config(ctx)["postfix-virtual"])
    # A copy stays: the address is among its own targets (Postfix delivers it as it is),
    # and that one entry also keeps bob out of the catch-all (no second identity entry).
    assert virtual["bob@example.net"] == "bob@example.net, bob@home.example"
    # None stays: carol's mail (and her aliases') goes only to the target.
    assert virtual["carol@example.org"] == "carol@home.example"
    assert table(render_config(ctx)["postfix-vmailbox"])["carol@example.org"] == "OK"
    lines = [ln for ln in render_config(ctx)["postfix-virtual"].splitlines() if ln.strip()]
    assert sum(ln.split()[0] == "bob@example.net" for ln in lines) == 1
