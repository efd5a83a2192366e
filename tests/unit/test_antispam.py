"""Junk filing and spam training at the tenant, as rendered from the plan's antispam
level and the platform's controller settings (render/antispam.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from vpes_operator.builders import ServerInputs, desired_objects
from vpes_operator.builders.meta import Owner
from vpes_operator.credentials import Material
from vpes_operator.models.plan import AntispamLevel, Features, MailPlanSpec
from vpes_operator.reconcile import antispam_password
from vpes_operator.render import RenderError, render_config
from vpes_operator.render.antispam import UNTRUSTED_HEADER_CHECKS
from vpes_operator.render.layout import ANTISPAM_PASSWORD_KEY, LEARN_SPOOL_DIR, SIEVE_DIR
from vpes_operator.settings import OperatorSettings

from . import render_support
from .render_support import PLAN, SETTINGS, TRAINING_SETTINGS, ctx_of, make_spec

pytestmark = pytest.mark.unit
hashes = render_support.hashes

PASSWORD = "Qm9vLXRyYWluaW5nLXBhc3N3b3Jk"
OWNER = Owner("alice", "customer-1", "uid-1", "personal")


def plan(level: AntispamLevel) -> MailPlanSpec:
    return PLAN.model_copy(update={"features": Features(antispam=level)})


def config(level: AntispamLevel, settings: OperatorSettings = TRAINING_SETTINGS) -> dict[str, str]:
    return render_config(ctx_of(plan=plan(level), settings=settings))


def build(
    level: AntispamLevel,
    hashes: dict[str, str],
    *,
    password: str = PASSWORD,
    settings: OperatorSettings = TRAINING_SETTINGS,
) -> dict[str, dict[str, Any]]:
    sources = dict.fromkeys(hashes, "secret")
    material = Material(
        password_hashes=hashes, password_sources=sources, tls_cert="cert", tls_key="key"
    )
    inputs = ServerInputs(
        OWNER, make_spec(), plan(level), settings, material, antispam_password=password
    )
    return {o["kind"]: o for o in desired_objects(inputs)}


def controller_egress(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        r
        for r in policy["spec"]["egress"]
        if {"port": 11334, "protocol": "TCP"} in r.get("ports", [])
    ]


# --- Off: nothing at the tenant ------------------------------------------------------------


def test_off_has_no_junk_filing_and_no_training(hashes: dict[str, str]) -> None:
    files = config(AntispamLevel.OFF)
    dovecot = files["dovecot.conf"]
    for absent in (
        "sieve_before",
        "imapsieve",
        "imap_sieve",
        "sieve_extprograms",
        "vnd.dovecot.pipe",
    ):
        assert absent not in dovecot, absent
    assert "url=" not in files["learn.conf"]
    objects = build(AntispamLevel.OFF, hashes)
    assert objects["Secret"]["stringData"][ANTISPAM_PASSWORD_KEY] == ""
    assert controller_egress(objects["NetworkPolicy"]) == []


def test_off_needs_no_password(hashes: dict[str, str]) -> None:
    objects = build(AntispamLevel.OFF, hashes, password="")
    assert objects["Secret"]["stringData"][ANTISPAM_PASSWORD_KEY] == ""


# --- Standard and Strict: Junk filing, and training where the platform has a controller --------


@pytest.mark.parametrize("level", [AntispamLevel.STANDARD, AntispamLevel.STRICT])
def test_junk_filing_runs_before_the_users_script(level: AntispamLevel) -> None:
    dovecot = config(level, SETTINGS)["dovecot.conf"]
    assert f"sieve_before = {SIEVE_DIR}/junk.sieve\n" in dovecot
    # The user's own script stays where it was, after it.
    assert "sieve = file:~/sieve;active=~/.dovecot.sieve\n" in dovecot
    # No controller in these settings: no training.
    assert "imapsieve" not in dovecot and "imap_sieve" not in dovecot
    assert "url=" not in config(level, SETTINGS)["learn.conf"]


@pytest.mark.parametrize("level", [AntispamLevel.STANDARD, AntispamLevel.STRICT])
def test_training_config(level: AntispamLevel) -> None:
    files = config(level)
    dovecot = files["dovecot.conf"]
    imap = dovecot.split("protocol imap {")[1].split("}")[0]
    assert "imap_sieve" in imap
    lines = set(dovecot.splitlines())
    for setting in (
        "  sieve_plugins = sieve_imapsieve sieve_extprograms",
        "  sieve_global_extensions = +vnd.dovecot.pipe",
        "  imapsieve_mailbox1_name = Junk",
        "  imapsieve_mailbox1_causes = COPY APPEND",
        f"  imapsieve_mailbox1_before = file:{SIEVE_DIR}/learn-spam.sieve",
        "  imapsieve_mailbox2_name = *",
        "  imapsieve_mailbox2_from = Junk",
        "  imapsieve_mailbox2_causes = COPY",
        f"  imapsieve_mailbox2_before = file:{SIEVE_DIR}/learn-ham.sieve",
    ):
        assert setting in lines, setting
    # Users' own scripts may not pipe: the extension is global only.
    assert "sieve_extensions" not in dovecot
    learn = dict(
        line.split("=", 1)
        for line in files["learn.conf"].splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert learn == {
        "url": "http://vpes-antispam.vpes-system.svc.cluster.local:11334",
        "spool": LEARN_SPOOL_DIR,
        "spool_limit_bytes": str(32 * 1024 * 1024),
        "spool_limit_messages": "1000",
        "message_limit_bytes": str(2 * 1024 * 1024),
        "reserve_bytes": str(ctx_of(plan=plan(level)).queue_minfree_bytes),
    }


def test_training_puts_the_password_in_the_secret_only(hashes: dict[str, str]) -> None:
    objects = build(AntispamLevel.STANDARD, hashes)
    assert objects["Secret"]["stringData"][ANTISPAM_PASSWORD_KEY] == PASSWORD
    for kind in ("ConfigMap", "StatefulSet", "NetworkPolicy", "Service"):
        assert PASSWORD not in repr(objects[kind]), kind
    # The pod reaches the Rspamd pods' controller port, nothing else new.
    rules = controller_egress(objects["NetworkPolicy"])
    assert rules == [
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "vpes-system"}
                    },
                    "podSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/part-of": "vpes",
                            "vpes.io/component": "antispam",
                        }
                    },
                }
            ],
            "ports": [{"port": 11334, "protocol": "TCP"}],
        }
    ]
    without = build(AntispamLevel.STANDARD, hashes, settings=SETTINGS)
    assert (
        len(without["NetworkPolicy"]["spec"]["egress"])
        == len(objects["NetworkPolicy"]["spec"]["egress"]) - 1
    )


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "controller password cannot be read from /etc/vpes/antispam/controller-password"),
        ("short", "12 to 256 letters"),
        ('quote"inside-the-password', "12 to 256 letters"),
        ("new\nline-in-the-password", "12 to 256 letters"),
    ],
)
def test_training_refuses_a_missing_or_unusable_password(
    hashes: dict[str, str], password: str, message: str
) -> None:
    with pytest.raises(RenderError, match=re.escape(message)):
        build(AntispamLevel.STRICT, hashes, password=password)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"antispam_controller_url": "http://rspamd:11334/learn"}, "must be http://host[:port]"),
        ({"antispam_controller_url": "ftp://rspamd"}, "must be http://host[:port]"),
        ({"antispam_learn_spool_limit": "1Ki"}, "at least 64Ki"),
        ({"antispam_learn_spool_limit": "lots"}, "antispam_learn_spool_limit"),
    ],
)
def test_bad_training_settings_are_refused(update: dict[str, str], message: str) -> None:
    with pytest.raises(RenderError, match=re.escape(message)):
        ctx_of(
            plan=plan(AntispamLevel.STANDARD), settings=TRAINING_SETTINGS.model_copy(update=update)
        )


def test_small_spool_limits_a_message_to_a_quarter() -> None:
    settings = TRAINING_SETTINGS.model_copy(update={"antispam_learn_spool_limit": "64Ki"})
    training = ctx_of(plan=plan(AntispamLevel.STANDARD), settings=settings).antispam.training
    assert training is not None
    assert (training.spool_limit_bytes, training.message_limit_bytes) == (65536, 16384)


def test_the_password_is_read_afresh_from_its_file(tmp_path: Path) -> None:
    path = tmp_path / "controller-password"
    settings = TRAINING_SETTINGS.model_copy(update={"antispam_controller_password_file": str(path)})
    assert antispam_password(settings) == ""  # no file yet: the build names it
    path.write_text(PASSWORD + "\n")
    assert antispam_password(settings) == PASSWORD
    assert antispam_password(SETTINGS) == ""  # no controller: not read at all


# --- the X-Spam header is trusted from the edge's MX only -------------------------------------


@pytest.mark.parametrize("level", list(AntispamLevel))
def test_only_port_25_keeps_a_senders_x_spam_header(level: AntispamLevel) -> None:
    files = config(level)
    assert f"untrusted_header_checks = {UNTRUSTED_HEADER_CHECKS}\n" in files["postfix-main.cf"]
    services: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", files["postfix-master.cf"]):
        if block and not block.startswith("#"):
            services[block.split()[0]] = block
    smtpd = {name: text for name, text in services.items() if " smtpd" in text.splitlines()[0]}
    trusted = {name for name, text in smtpd.items() if "cleanup_service_name" not in text}
    # Port 25 (the edge's MX) and the loopback listener Dovecot's redirects use.
    assert trusted == {"25", "127.0.0.1:10026"}, sorted(trusted)
    assert {"587", "465", "10025", "10587", "10465"} <= set(smtpd) - trusted
    for name in set(smtpd) - trusted:
        assert "-o cleanup_service_name=cleanup-untrusted" in smtpd[name]
    assert "-o header_checks=$untrusted_header_checks" in services["cleanup-untrusted"]
    assert "header_checks" not in services["cleanup"]
