"""The tenant StatefulSet's pod: which secrets it mounts, how, and with what privileges."""

from __future__ import annotations

import re
from typing import Any

import pytest
from vpes_operator.builders.config import credentials_secret
from vpes_operator.builders.meta import Owner
from vpes_operator.builders.workload import CAPABILITIES, statefulset
from vpes_operator.credentials import Material
from vpes_operator.render import render_config
from vpes_operator.render.layout import (
    ANTISPAM_PASSWORD_KEY,
    DOVECOT_PASSWD_PATH,
    PASSWD_KEY,
    RUN_DIR,
    SECRETS_DIR,
    TLS_CERT_KEY,
    TLS_KEY_KEY,
)

from .render_support import PLAN, SETTINGS, ctx_of

pytestmark = pytest.mark.unit

OWNER = Owner(name="alice", namespace="customer-1", uid="0f3c2b1a", plan="personal")


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = statefulset(OWNER, PLAN, SETTINGS, suspended=False)["spec"]
    return spec["template"]["spec"]  # type: ignore[no-any-return]


def secrets_volume() -> dict[str, Any]:
    return next(v for v in pod()["volumes"] if v["name"] == "secrets")["secret"]  # type: ignore[no-any-return]


def test_only_the_keys_the_tenant_reads_are_mounted_root_only() -> None:
    volume = secrets_volume()
    assert volume["secretName"] == "alice-credentials"
    assert volume["items"] == [
        {"key": PASSWD_KEY, "path": PASSWD_KEY, "mode": 0o400},
        {"key": TLS_CERT_KEY, "path": TLS_CERT_KEY, "mode": 0o400},
        {"key": TLS_KEY_KEY, "path": TLS_KEY_KEY, "mode": 0o400},
        {"key": "relay-sasl", "path": "relay-sasl", "mode": 0o400},
        {"key": ANTISPAM_PASSWORD_KEY, "path": ANTISPAM_PASSWORD_KEY, "mode": 0o400},
    ]
    assert volume["defaultMode"] == 0o400
    mount = next(m for m in pod()["containers"][0]["volumeMounts"] if m["name"] == "secrets")
    assert mount == {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True}


def test_no_fs_group_that_would_make_the_secrets_group_readable() -> None:
    # With an fsGroup the kubelet gives every file of the Secret volume that
    # group and adds group read (0400 becomes 0440): the mail user could read them.
    context = pod()["securityContext"]
    assert "fsGroup" not in context and "fsGroupChangePolicy" not in context
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_secret_holds_every_mounted_key_and_the_unused_ones_stay_out() -> None:
    material = Material(
        dkim_keys={"example.org": "rsa-pem"},
        dkim_ed25519_keys={"example.org": "ed-pem"},
        tls_cert="cert",
        tls_key="key",
    )
    data = credentials_secret(OWNER, material, "passwd-file")["stringData"]
    mounted = {item["key"] for item in secrets_volume()["items"]}
    assert mounted <= set(data)  # a missing key would keep the pod from starting
    # The DKIM keys and the relay password's hash are the relay's (the shards), the
    # plain relay password only in the relay-sasl map Postfix reads.
    unused = {k for k in data if "dkim" in k or k.endswith(".json") or k.startswith("relay-pass")}
    assert unused == set(data) - mounted


def test_the_configuration_reads_only_mounted_secrets() -> None:
    files = render_config(ctx_of())
    mounted = {f"{SECRETS_DIR}/{item['path']}" for item in secrets_volume()["items"]}
    used = {m for text in files.values() for m in re.findall(rf"{SECRETS_DIR}/[\w.-]+", text)}
    # passwd and the controller password are read by vpes-init (copies for Dovecot's
    # auth process and for the learn sender), not named in a configuration.
    assert used == mounted - {
        f"{SECRETS_DIR}/{PASSWD_KEY}",
        f"{SECRETS_DIR}/{ANTISPAM_PASSWORD_KEY}",
    }
    # Dovecot's auth process (not root, not the mail user) reads vpes-init's copy.
    assert DOVECOT_PASSWD_PATH.startswith(f"{RUN_DIR}/")
    assert f"args = {DOVECOT_PASSWD_PATH}\n" in files["dovecot.conf"]
    assert "user = dovecot\n" in files["dovecot.conf"].split("service auth {")[1]


def test_capabilities() -> None:
    # Each is needed (tests/images fails without it; why: builders/workload.py);
    # DAC_OVERRIDE was replaced by DAC_READ_SEARCH (read and search, no write).
    security = pod()["containers"][0]["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": CAPABILITIES}
    assert CAPABILITIES == [
        "CHOWN",
        "DAC_READ_SEARCH",
        "FOWNER",
        "KILL",
        "NET_BIND_SERVICE",
        "SETGID",
        "SETUID",
        "SYS_CHROOT",
    ]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False


def test_readiness_is_the_smtp_port_asked_as_often_as_the_settings_say() -> None:
    probe = pod()["containers"][0]["readinessProbe"]
    assert probe == {"tcpSocket": {"port": "smtp"}, "periodSeconds": 10, "failureThreshold": 3}
    quick = SETTINGS.model_copy(update={"tenant_readiness_period_seconds": 2})
    spec = statefulset(OWNER, PLAN, quick, suspended=False)["spec"]["template"]["spec"]
    assert spec["containers"][0]["readinessProbe"]["periodSeconds"] == 2
