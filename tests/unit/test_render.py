"""The tenant configuration renderer: PMS → Postfix + Dovecot configuration."""

from __future__ import annotations

import random
import re
from typing import Any

import bcrypt
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
    PORTS,
    VMAIL_GID,
    VMAIL_UID,
    PasswdEntry,
    RenderError,
    TenantContext,
    build_context,
    format_passwd,
    layout,
    render_config,
    render_passwd,
)
from vpes_operator.render import tenant as tenant_module
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

PASSWORDS = {
    "alice@example.org": "correct horse battery staple",
    "bob@example.net": "hunter2-but-longer",
    "carol@example.org": "Tr0ub4dor&3",
}


def spec_dict(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "plan": "personal",
        "owner": {"email": "owner@contact.example"},
        "domains": ["example.org", "example.net"],
        "mailboxes": [
            {
                "address": "alice@example.org",
                "quota": "1Gi",
                "aliases": ["info", "a@example.net", "postmaster"],
            },
            {"address": "bob@example.net", "aliases": ["info", "b"]},
            {"address": "carol@example.org", "quota": "300k"},
        ],
        "forwards": [
            {"from": "sales@example.org", "to": ["x@elsewhere.example", "bob@example.net"]},
        ],
    }
    spec.update(overrides)
    return spec


def make_spec(**overrides: Any) -> PersonalMailServerSpec:
    return PersonalMailServerSpec.model_validate(spec_dict(**overrides))


PLAN = MailPlanSpec(default_quota="512Mi", max_message_size="25Mi")
SETTINGS = OperatorSettings(
    relay_host="[relay.vpes-system.svc.cluster.local]:25",
    edge_networks=("10.0.0.0/8", "fd00::/8"),
)


def ctx_of(
    spec: PersonalMailServerSpec | None = None,
    plan: MailPlanSpec = PLAN,
    settings: OperatorSettings = SETTINGS,
    name: str = "alice",
    namespace: str = "customer-1",
) -> TenantContext:
    return build_context(name, namespace, spec or make_spec(), plan, settings)


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {
        a: "{BLF-CRYPT}" + bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()
        for a, p in PASSWORDS.items()
    }


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return render_config(ctx_of())


def table(text: str) -> dict[str, str]:
    """A texthash lookup table as key → value (comments skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.split("\t")
        assert key not in out, f"duplicate key {key}"
        assert not re.search(r"\s", key)
        out[key] = value
    return out


def main_cf(text: str) -> dict[str, str]:
    """main.cf as name → value, continuation lines joined like Postfix does."""
    params: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line[0].isspace():
            params[name] = (params[name] + " " + line.strip()).strip()
        else:
            name, _, value = line.partition("=")
            name = name.strip()
            assert name not in params, f"{name} set twice"
            params[name] = value.strip()
    return params


# --- the files -----------------------------------------------------------------


def test_config_files_are_valid_configmap_keys_and_relative_paths(
    rendered: dict[str, str],
) -> None:
    assert CONFIG_FILES is layout.CONFIG_FILES
    assert list(rendered) == sorted(CONFIG_FILES)
    for key, path in CONFIG_FILES.items():
        assert re.fullmatch(r"[-._a-zA-Z0-9]+", key)
        assert not path.startswith("/")
        assert ".." not in path.split("/")


@pytest.mark.parametrize("key", sorted(CONFIG_FILES))
def test_every_file_is_complete_text(rendered: dict[str, str], key: str) -> None:
    text = rendered[key]
    assert text.endswith("\n")
    assert "{{" not in text and "{%" not in text
    assert "None" not in text
    assert "\r" not in text
    assert "PersonalMailServer customer-1/alice" in text.splitlines()[0]


# --- determinism ---------------------------------------------------------------


def test_rendering_twice_gives_the_same_bytes(hashes: dict[str, str]) -> None:
    first, second = ctx_of(), ctx_of()
    assert first == second
    assert render_config(first) == render_config(second)
    assert render_passwd(first, hashes) == render_passwd(second, hashes)


@pytest.mark.parametrize("seed", range(5))
def test_permuted_input_gives_the_same_bytes(seed: int, hashes: dict[str, str]) -> None:
    rng = random.Random(seed)
    spec = spec_dict()
    rng.shuffle(spec["domains"])
    rng.shuffle(spec["mailboxes"])
    for m in spec["mailboxes"]:
        rng.shuffle(m.setdefault("aliases", []))
    for f in spec["forwards"]:
        rng.shuffle(f["to"])
    nets = ["fd00::/8", "10.0.0.0/8"]
    rng.shuffle(nets)
    settings = SETTINGS.model_copy(update={"edge_networks": tuple(nets)})
    ctx = ctx_of(PersonalMailServerSpec.model_validate(spec), settings=settings)
    assert ctx == ctx_of()
    assert render_config(ctx) == render_config(ctx_of())
    shuffled = dict(rng.sample(sorted(hashes.items()), len(hashes)))
    assert render_passwd(ctx, shuffled) == render_passwd(ctx_of(), hashes)


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


# --- settings ---------------------------------------------------------------------------


def test_relay_host_and_hostname(rendered: dict[str, str]) -> None:
    params = main_cf(rendered["postfix-main.cf"])
    assert params["relayhost"] == "[relay.vpes-system.svc.cluster.local]:25"
    assert params["myhostname"] == "alice.customer-1.vpes.internal"
    assert "hostname = alice.customer-1.vpes.internal\n" in rendered["dovecot.conf"]
    direct = render_config(ctx_of(settings=OperatorSettings(relay_host="")))
    assert main_cf(direct["postfix-main.cf"])["relayhost"] == ""


def test_edge_networks_are_trusted_for_proxy_but_never_relay(rendered: dict[str, str]) -> None:
    params = main_cf(rendered["postfix-main.cf"])
    # No address is trusted to relay: a PROXY header may claim any, loopback too.
    assert params["mynetworks"] == ""
    assert params["smtpd_client_event_limit_exceptions"] == "10.0.0.0/8 [fd00::]/8"
    assert params["smtpd_relay_restrictions"] == "reject_unauth_destination"
    assert "permit_mynetworks" not in rendered["postfix-main.cf"]
    dovecot = rendered["dovecot.conf"]
    assert "haproxy_trusted_networks = 10.0.0.0/8 fd00::/8\n" in dovecot
    assert "login_trusted_networks = 10.0.0.0/8 fd00::/8\n" in dovecot


def test_no_relay_tricks_and_no_local_delivery(rendered: dict[str, str]) -> None:
    params = main_cf(rendered["postfix-main.cf"])
    for name, value in {
        "allow_percent_hack": "no",
        "swap_bangpath": "no",
        "resolve_dequoted_address": "no",
        "allow_untrusted_routing": "no",
        "smtpd_tls_auth_only": "yes",
        "smtpd_sasl_auth_enable": "no",
        "local_recipient_maps": "",
        "alias_maps": "",
        "smtpd_tls_protocols": ">=TLSv1.2",
        "smtpd_tls_mandatory_protocols": ">=TLSv1.2",
        "inet_interfaces": "all",
    }.items():
        assert params[name] == value, name
    assert "reject_sender_login_mismatch" in params["mua_sender_restrictions"]
    assert params["mua_relay_restrictions"] == "permit_sasl_authenticated, reject"
    assert (
        "check_policy_service unix:/run/vpes/dovecot/quota-status"
        in (params["smtpd_recipient_restrictions"])
    )
    assert params["virtual_transport"] == "lmtp:unix:/run/vpes/dovecot/lmtp"
    for table_param in ("virtual_alias_maps", "virtual_mailbox_maps", "smtpd_sender_login_maps"):
        assert params[table_param].startswith("texthash:/etc/vpes/config/postfix/")
        path = params[table_param].removeprefix("texthash:/etc/vpes/config/")
        assert path in CONFIG_FILES.values()


def master_services(text: str) -> dict[str, list[str]]:
    """master.cf as service name → its fields and -o options, in order."""
    services: dict[str, list[str]] = {}
    name = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line[0].isspace():
            services[name] += line.split()
        else:
            name = line.split()[0]
            assert name not in services, f"{name} twice"
            services[name] = line.split()[1:]
    return services


def _options(fields: list[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in fields if "=" in o)


def test_proxy_listeners_trust_no_client_address(rendered: dict[str, str]) -> None:
    services = master_services(rendered["postfix-master.cf"])
    proxied = {name: _options(f) for name, f in services.items() if "-o" in f}
    proxied = {n: o for n, o in proxied.items() if "smtpd_upstream_proxy_protocol" in o}
    assert sorted(proxied) == ["10025", "10465", "10587"]
    for name, options in proxied.items():
        assert options["smtpd_upstream_proxy_protocol"] == "haproxy", name
        assert options["smtpd_client_event_limit_exceptions"] == "", name
        assert "mynetworks" not in options, name
        assert "permit_mynetworks" not in options.get("smtpd_relay_restrictions", ""), name


def test_only_a_loopback_listener_relays_for_dovecot(rendered: dict[str, str]) -> None:
    services = master_services(rendered["postfix-master.cf"])
    internal = services[layout.INTERNAL_SUBMISSION]
    assert layout.INTERNAL_SUBMISSION.startswith("127.0.0.1:")
    assert internal[:7] == ["inet", "n", "-", "n", "-", "-", "smtpd"]
    options = _options(internal)
    assert options["mynetworks"] == "127.0.0.0/8"
    assert options["smtpd_relay_restrictions"] == "permit_mynetworks,reject"
    assert options["smtpd_recipient_restrictions"] == "$internal_recipient_restrictions"
    assert main_cf(rendered["postfix-main.cf"])["internal_recipient_restrictions"] == (
        "reject_non_fqdn_recipient, check_policy_service unix:/run/vpes/dovecot/quota-status"
    )
    assert "smtpd_upstream_proxy_protocol" not in options
    assert f"submission_host = {layout.INTERNAL_SUBMISSION}\n" in rendered["dovecot.conf"]
    # Every other listener is a published port (no other inet service).
    inet = {name for name, f in services.items() if f[0] == "inet"}
    assert inet == {str(p.port) for p in PORTS if p.daemon == "postfix"} | {
        layout.INTERNAL_SUBMISSION
    }
    assert int(layout.INTERNAL_SUBMISSION.rpartition(":")[2]) not in {p.port for p in PORTS}


def test_master_cf_is_never_chrooted(rendered: dict[str, str]) -> None:
    for line in rendered["postfix-master.cf"].splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            assert line.split()[4] == "n", line
    assert "pickup" not in rendered["postfix-master.cf"]
    assert "showq" not in rendered["postfix-master.cf"]


def test_vmail_ids_reach_dovecot(rendered: dict[str, str]) -> None:
    dovecot = rendered["dovecot.conf"]
    assert f"mail_uid = {VMAIL_UID}\n" in dovecot
    assert f"mail_gid = {VMAIL_GID}\n" in dovecot
    assert "mail_location = maildir:/var/mail/vpes/%d/%n/Maildir:INDEX=" in dovecot
    assert "args = /etc/vpes/secrets/passwd\n" in dovecot


# --- ports --------------------------------------------------------------------------------


def test_ports_are_unique_and_well_named() -> None:
    assert len({p.port for p in PORTS}) == len(PORTS)
    assert len({p.name for p in PORTS}) == len(PORTS)
    for p in PORTS:
        assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?", p.name), p.name
        assert p.proxy == p.name.endswith("-pp") == (p.port > 10000)


@pytest.mark.parametrize("port", PORTS, ids=lambda p: p.name)
def test_every_port_is_rendered(rendered: dict[str, str], port: Any) -> None:
    if port.daemon == "postfix":
        block = re.search(
            rf"^{port.port}\s+inet\b.*?(?=^\S)", rendered["postfix-master.cf"], re.S | re.M
        )
        assert block is not None
        assert ("smtpd_upstream_proxy_protocol=haproxy" in block.group(0)) == port.proxy
    else:
        block = re.search(
            rf"inet_listener \w+ {{\n    port = {port.port}\n(.*?)  }}",
            rendered["dovecot.conf"],
            re.S,
        )
        assert block is not None
        assert ("haproxy = yes" in block.group(1)) == port.proxy


# --- StrictUndefined --------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(CONFIG_FILES))
def test_a_missing_value_raises(key: str) -> None:
    env = tenant_module._environment()
    assert env.loader is not None
    source = env.loader.get_source(env, f"{key}.j2")[0]
    needed = jinja2.meta.find_undeclared_variables(env.parse(source))
    values = tenant_module._values(ctx_of())
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
            {"forwards": [{"from": "alice@example.org", "to": ["x@elsewhere.example"]}]},
            "is a mailbox",
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


def test_dkim_keys_name_each_domain() -> None:
    ctx = ctx_of()
    assert [(k.domain, k.selector, k.path) for k in ctx.dkim_keys] == [
        ("example.net", "vpes", "/etc/vpes/secrets/dkim-example.net.key"),
        ("example.org", "vpes", "/etc/vpes/secrets/dkim-example.org.key"),
    ]
