"""The renderer refuses what it cannot render safely: missing values, foreign addresses,
plaintext passwords, bad specs and settings."""

from __future__ import annotations

import re
from typing import Any

import jinja2
import jinja2.meta
import pytest
from vpes_operator.crypto import hash_password
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import (
    CatchAll,
    Forward,
    Mailbox,
    Owner,
    PersonalMailServerSpec,
)
from vpes_operator.render import (
    CONFIG_FILES,
    PasswdEntry,
    RenderError,
    build_context,
    format_passwd,
    render_config,
    render_passwd,
)
from vpes_operator.render import tenant as tenant_module
from vpes_operator.settings import OperatorSettings

from . import render_support
from .render_support import (
    PASSWORDS,
    PLAN,
    SETTINGS,
    TRAINING_SETTINGS,
    ctx_of,
    make_spec,
)

pytestmark = pytest.mark.unit
hashes = render_support.hashes
rendered = render_support.rendered


@pytest.mark.parametrize("key", sorted(CONFIG_FILES))
def test_a_missing_value_raises(key: str) -> None:
    env = tenant_module._environment()
    assert env.loader is not None
    source = env.loader.get_source(env, f"{key}.j2")[0]
    needed = jinja2.meta.find_undeclared_variables(env.parse(source))
    # With training: every conditional part of the templates is rendered.
    values = tenant_module._values(ctx_of(settings=TRAINING_SETTINGS))
    assert needed <= set(values)
    for name in sorted(needed):
        partial = {k: v for k, v in values.items() if k != name}
        with pytest.raises(jinja2.UndefinedError):
            tenant_module.render_template(f"{key}.j2", partial)


def test_a_missing_attribute_raises() -> None:
    values = tenant_module._values(ctx_of())
    values["virtual"] = [{"address": "x@example.org"}]  # no "targets"
    with pytest.raises(jinja2.UndefinedError):
        tenant_module.render_template("postfix-virtual.j2", values)


# --- isolation and secrets -------------------------------------------------------------------


def test_one_server_never_contains_another_servers_addresses(hashes: dict[str, str]) -> None:
    other = make_spec(
        owner={"email": "boss@other-owner.example"},
        domains=["other.example"],
        mailboxes=[{"address": "zed@other.example", "aliases": ["hello", "info"]}],
        forwards=[{"from": "fwd@other.example", "to": ["far@away.example"]}],
    )
    mine = render_config(ctx_of())
    theirs = render_config(ctx_of(other, name="other", namespace="customer-2"))
    text_mine = "".join(mine.values()) + render_passwd(ctx_of(), hashes)
    text_theirs = "".join(theirs.values())
    for needle in (
        "other.example",
        "zed@",
        "fwd@",
        "far@away.example",
        "boss@",
        "customer-2",
    ):
        assert needle not in text_mine
    for needle in ("example.org", "example.net", "alice@", "bob@", "sales@", "customer-1"):
        assert needle not in text_theirs


def test_no_plaintext_password_anywhere(hashes: dict[str, str]) -> None:
    ctx = ctx_of()
    passwd = render_passwd(ctx, hashes)
    everything = "".join(render_config(ctx).values()) + passwd
    for password in PASSWORDS.values():
        assert password not in everything
    for line in passwd.splitlines():
        assert line.split(":")[1].startswith("{BLF-CRYPT}$2b$")
    for key, text in render_config(ctx).items():
        assert "$2b$" not in text, key  # hashes live only in the Secret


@pytest.mark.parametrize(
    "password_hash",
    [
        "secret",
        "{PLAIN}secret",
        "{CLEAR}secret",
        "{SHA512-CRYPT}$6$abc$def",  # a hash, but not a scheme we allow
        "{BLF-CRYPT}",
        "{BLF-CRYPT}secret",
        "{BLF-CRYPT}$2b$04$with:colon",
        "{BLF-CRYPT}$2b$04$with space",
        "{BLF-CRYPT}$2b$04$abc\nroot:{PLAIN}x",
    ],
)
def test_passwd_refuses_anything_but_a_hash(password_hash: str) -> None:
    with pytest.raises(RenderError, match="never plaintext"):
        format_passwd([PasswdEntry("alice@example.org", password_hash, 1)])


def test_hashes_made_by_the_operator_are_accepted() -> None:
    ctx = ctx_of()
    hashes = {m.address: hash_password(f"pw of {m.address}", 4) for m in ctx.mailboxes}
    passwd = render_passwd(ctx, hashes)
    assert passwd.count("{BLF-CRYPT}$2y$") == len(ctx.mailboxes)


def test_passwd_accepts_argon2id() -> None:
    line = format_passwd(
        [PasswdEntry("a@example.org", "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA", 5)]
    )
    assert line == (
        "a@example.org:{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA"
        "::::::userdb_quota_rule=*:bytes=5\n"
    )


def test_passwd_needs_a_hash_for_every_mailbox(hashes: dict[str, str]) -> None:
    partial = {k: v for k, v in hashes.items() if k != "bob@example.net"}
    with pytest.raises(RenderError, match=r"bob@example\.net"):
        render_passwd(ctx_of(), partial)
    extra = {**hashes, "stranger@example.org": hashes["bob@example.net"]}
    assert "stranger" not in render_passwd(ctx_of(), extra)


def test_passwd_refuses_duplicates_and_bad_quota() -> None:
    entry = PasswdEntry("a@example.org", "{BLF-CRYPT}$2b$04$abc", 1)
    with pytest.raises(RenderError, match="twice"):
        format_passwd([entry, entry])
    with pytest.raises(RenderError, match="quota"):
        format_passwd([PasswdEntry("a@example.org", "{BLF-CRYPT}$2b$04$abc", 0)])


# --- bad input ---------------------------------------------------------------------------------


def _mb(address: str, **kw: Any) -> dict[str, Any]:
    return {"address": address, **kw}


def raw_spec(
    domains: list[str],
    mailboxes: list[dict[str, Any]],
    forwards: list[dict[str, Any]],
    catch_all: list[dict[str, Any]] | None = None,
) -> PersonalMailServerSpec:
    """A spec built without validation: the renderer must hold even where the
    API server's CEL rules or the pydantic patterns would have refused it."""
    return PersonalMailServerSpec.model_construct(
        plan="personal",
        owner=Owner(email="owner@contact.example"),
        domains=domains,
        mailboxes=[
            Mailbox.model_construct(
                address=m["address"], quota=m.get("quota"), aliases=m.get("aliases", [])
            )
            for m in mailboxes
        ],
        forwards=[Forward.model_construct(from_=f["from"], to=f["to"]) for f in forwards],
        catch_all=[
            CatchAll.model_construct(domain=c["domain"], to=c["to"]) for c in catch_all or []
        ],
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mailboxes": [_mb("me@nothere.example")]}, "not one of spec.domains"),
        ({"mailboxes": [_mb("me@example.org"), _mb("me@example.org")]}, "twice"),
        ({"mailboxes": [_mb("me+x@example.org")]}, "mailbox name"),
        ({"mailboxes": [_mb("o'brien@example.org")]}, "mailbox name"),
        ({"mailboxes": [_mb("a/b@example.org")]}, "mailbox name"),
        ({"mailboxes": [_mb("Me@example.org")]}, "valid lowercase mail address"),
        ({"mailboxes": [_mb("#me@example.org")]}, "valid lowercase mail address"),
        ({"mailboxes": [_mb("me@example.org", quota="0")]}, "more than 0"),
        ({"mailboxes": [_mb("me@example.org", quota="1.5Gi")]}, "not a byte quantity"),
        (
            {"forwards": [{"from": "f@example.org", "to": ["f@example.org", "x@e.example"]}]},
            "names itself, which is no mailbox",
        ),
        (
            {"forwards": [{"from": "f@nothere.example", "to": ["x@elsewhere.example"]}]},
            "not one of spec.domains",
        ),
        ({"forwards": [{"from": "f@example.org", "to": []}]}, "no target"),
        ({"forwards": [{"from": "f@example.org", "to": ["not an address"]}]}, "target"),
        (
            {
                "forwards": [
                    {"from": "f@example.org", "to": ["x@elsewhere.example"]},
                    {"from": "f@example.org", "to": ["y@elsewhere.example"]},
                ]
            },
            "twice",
        ),
        (
            {
                "mailboxes": [
                    _mb("me@example.org", aliases=["you@example.org"]),
                    _mb("you@example.org"),
                ]
            },
            "already a mailbox or a forward",
        ),
        (
            {
                "mailboxes": [_mb("me@example.org", aliases=["sales@example.org"])],
                "forwards": [{"from": "sales@example.org", "to": ["x@elsewhere.example"]}],
            },
            "already a mailbox or a forward",
        ),
        (
            {"mailboxes": [_mb("me@example.org", aliases=["ceo@bank.example"])]},
            "not one of spec.domains",
        ),
        ({"mailboxes": [_mb("me@example.org", aliases=["#x"])]}, "not valid"),
        ({"mailboxes": [_mb("me@example.org", aliases=["a b"])]}, "not valid"),
        (
            {"catchAll": [{"domain": "nothere.example", "to": "alice@example.org"}]},
            "catch-all of nothere.example: that domain is not one of spec.domains",
        ),
        (
            {"catchAll": [{"domain": "example.org", "to": "bob@example.org"}]},
            "its target bob@example.org is not a mailbox of this server",
        ),
        (
            {"catchAll": [{"domain": "example.org", "to": "sales@example.org"}]},
            "not a mailbox",  # a forward is not a mailbox
        ),
        (
            {"catchAll": [{"domain": "example.org", "to": "Alice@example.org"}]},
            "valid lowercase mail address",
        ),
        (
            {
                "catchAll": [
                    {"domain": "example.org", "to": "alice@example.org"},
                    {"domain": "example.org", "to": "alice@example.org"},
                ]
            },
            "appears twice in spec.catchAll",
        ),
        ({"domains": []}, "at least one domain"),
        ({"domains": ["Example.ORG"]}, "IDNA"),
        ({"domains": ["example.org\nmynetworks = 0.0.0.0/0"]}, "IDNA"),
    ],
)
def test_bad_spec_is_a_render_error(overrides: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"domains": ["example.org"], "mailboxes": [], "forwards": []}
    if ("forwards" in overrides or "catchAll" in overrides) and "mailboxes" not in overrides:
        base["mailboxes"] = [_mb("alice@example.org")]
    if "catchAll" in overrides:
        base["forwards"] = [{"from": "sales@example.org", "to": ["x@elsewhere.example"]}]
    base.update(overrides)
    with pytest.raises(RenderError, match=re.escape(message)):
        ctx_of(raw_spec(base["domains"], base["mailboxes"], base["forwards"], base.get("catchAll")))


@pytest.mark.parametrize(
    ("plan", "settings", "names", "message"),
    [
        (MailPlanSpec(default_quota="0"), SETTINGS, ("a", "b"), "defaultQuota"),
        (MailPlanSpec(max_message_size="0"), SETTINGS, ("a", "b"), "maxMessageSize"),
        (
            PLAN,
            OperatorSettings(relay_host="relay.example:25\nmynetworks=0/0"),
            ("a", "b"),
            "relay",
        ),
        (PLAN, OperatorSettings(relay_host="a b"), ("a", "b"), "relayhost"),
        (PLAN, OperatorSettings(edge_networks=("10.0.0.0/33",)), ("a", "b"), "CIDR"),
        (PLAN, OperatorSettings(edge_networks=("edge",)), ("a", "b"), "CIDR"),
        (PLAN, OperatorSettings(dkim_selector="bad selector"), ("a", "b"), "dkim_selector"),
        (PLAN, SETTINGS, ("Alice", "b"), "DNS labels"),
        (PLAN, SETTINGS, ("a", "b_c"), "DNS labels"),
        (PLAN, SETTINGS, ("a" * 64, "b"), "DNS labels"),
    ],
)
def test_bad_plan_settings_or_names_are_render_errors(
    plan: MailPlanSpec, settings: OperatorSettings, names: tuple[str, str], message: str
) -> None:
    with pytest.raises(RenderError, match=message):
        build_context(names[0], names[1], make_spec(), plan, settings)


def test_edge_networks_are_normalised() -> None:
    settings = OperatorSettings(edge_networks=("fd00::1/8", "192.168.1.7/24", "10.0.0.0/8"))
    ctx = ctx_of(settings=settings)
    assert ctx.edge_networks == ("10.0.0.0/8", "192.168.1.0/24", "fd00::/8")
