"""The tenant configuration renderer: PMS → Postfix + Dovecot configuration."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from vpes_operator.models.server import (
    PersonalMailServerSpec,
)
from vpes_operator.render import (
    CONFIG_FILES,
    PORTS,
    VMAIL_GID,
    VMAIL_UID,
    layout,
    render_config,
    render_passwd,
)
from vpes_operator.settings import OperatorSettings

from . import render_support
from .render_support import (
    SETTINGS,
    ctx_of,
    main_cf,
    spec_dict,
)

pytestmark = pytest.mark.unit
hashes = render_support.hashes
rendered = render_support.rendered


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


# --- settings ---------------------------------------------------------------------------


def test_relay_host_and_hostname(rendered: dict[str, str]) -> None:
    params = main_cf(rendered["postfix-main.cf"])
    assert params["relayhost"] == "[relay.vpes-system.svc.cluster.local]:25"
    assert params["myhostname"] == "alice.customer-1.vpes.internal"
    assert "hostname = alice.customer-1.vpes.internal\n" in rendered["dovecot.conf"]
    direct = render_config(ctx_of(settings=OperatorSettings(relay_host="")))
    assert main_cf(direct["postfix-main.cf"])["relayhost"] == ""


def test_relay_login_over_tls_only(rendered: dict[str, str]) -> None:
    params = main_cf(rendered["postfix-main.cf"])
    assert params["smtp_sasl_auth_enable"] == "yes"
    assert params["smtp_sasl_password_maps"] == "texthash:/etc/vpes/secrets/relay-sasl"
    assert params["smtp_sasl_security_options"] == "noanonymous"
    assert params["smtp_sasl_mechanism_filter"] == "plain"
    assert params["smtp_tls_security_level"] == "encrypt"
    direct = main_cf(render_config(ctx_of(settings=OperatorSettings()))["postfix-main.cf"])
    assert "smtp_sasl_auth_enable" not in direct
    assert direct["smtp_tls_security_level"] == "may"


def test_what_the_relay_defers_is_tried_again_after_a_minute(rendered: dict[str, str]) -> None:
    params = main_cf(rendered["postfix-main.cf"])
    assert params["minimal_backoff_time"] == params["queue_run_delay"] == "60s"
    assert params["maximal_backoff_time"] == "300s"
    direct = main_cf(render_config(ctx_of(settings=OperatorSettings()))["postfix-main.cf"])
    assert "minimal_backoff_time" not in direct  # the internet: Postfix's own pace
    sooner = SETTINGS.model_copy(update={"relay_retry_seconds": 10})
    quick = main_cf(render_config(ctx_of(settings=sooner))["postfix-main.cf"])
    assert quick["minimal_backoff_time"] == quick["queue_run_delay"] == "10s"
    assert quick["maximal_backoff_time"] == "300s"


def test_relay_sasl_map_names_the_relayhost_and_the_login() -> None:
    from vpes_operator.builders.config import relay_sasl_map
    from vpes_operator.builders.meta import Owner

    owner = Owner("alice", "shop", "uid", "basic")
    line = relay_sasl_map("[mail-edge-relay.vpes.svc.cluster.local]:587", owner, "pw")
    assert line == "[mail-edge-relay.vpes.svc.cluster.local]:587 shop/alice:pw\n"
    assert relay_sasl_map("", owner, "pw") == ""


def test_edge_networks_are_trusted_for_proxy_but_never_relay(rendered: dict[str, str]) -> None:
    params = main_cf(rendered["postfix-main.cf"])
    # No address is trusted to relay: a PROXY header may claim any, loopback too.
    assert params["mynetworks"] == ""
    assert params["smtpd_client_event_limit_exceptions"] == "10.0.0.0/8 [fd00::]/8"
    assert params["smtpd_relay_restrictions"] == "reject_unauth_destination"
    assert "permit_mynetworks" not in rendered["postfix-main.cf"]
    dovecot = rendered["dovecot.conf"]
    # PROXY headers from whoever reaches a PROXY port (the NetworkPolicy: the edge and
    # a dedicated load balancer); forwarded addresses and logins trusted from the edge.
    assert "haproxy_trusted_networks = 0.0.0.0/0 ::/0\n" in dovecot
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
    # Every other listener is a published port or the usage report (no other inet service).
    inet = {name for name, f in services.items() if f[0] == "inet"}
    assert inet == {str(p.port) for p in PORTS if p.daemon == "postfix"} | {
        layout.INTERNAL_SUBMISSION,
        str(layout.USAGE_PORT),
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
    assert "args = /run/vpes/dovecot-auth/passwd\n" in dovecot


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


def test_the_usage_report_runs_unprivileged_and_alone(rendered: dict[str, str]) -> None:
    usage = master_services(rendered["postfix-master.cf"])[str(layout.USAGE_PORT)]
    # spawn itself is privileged (unpriv n) to become the mail user; one at a time.
    assert usage[:7] == ["inet", "n", "n", "n", "-", "1", "spawn"]
    assert usage[7:] == [f"user={layout.VMAIL_USER}", f"argv={layout.USAGE_COMMAND}"]
    assert layout.USAGE_PORT not in {p.port for p in PORTS}  # not on the Service


def test_postfix_keeps_the_reserve_free_and_dovecot_never_bounces_a_full_disk(
    rendered: dict[str, str],
) -> None:
    main = main_cf(rendered["postfix-main.cf"])
    # The default plan: a 1 GiB volume, 25 MiB messages: 5 % of the volume.
    assert int(main["queue_minfree"]) == (1 << 30) // 20
    assert int(main["queue_minfree"]) >= 1.5 * int(main["message_size_limit"])
    assert "\nquota_full_tempfail = yes\n" in rendered["dovecot.conf"]
