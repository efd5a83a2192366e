"""The ConfigMap and Secrets of a server: rendered configuration and secret material."""

from __future__ import annotations

import json
from typing import Any

from .. import naming
from ..credentials import (
    HASHES_KEY,
    RELAY_HASH_KEY,
    RELAY_PASSWORD_KEY,
    Material,
    dkim_ed25519_key_name,
    dkim_key_name,
)
from ..render.layout import ANTISPAM_PASSWORD_KEY, RELAY_SASL_KEY
from .meta import Owner, metadata


def config_map(owner: Owner, files: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, naming.config_map(owner.name)),
        "data": dict(sorted(files.items())),
    }


def relay_sasl_map(relay_host: str, owner: Owner, password: str) -> str:
    """Postfix's smtp_sasl_password_maps (texthash: no postmap on a read-only mount):
    the relayhost, exactly as main.cf names it, and ``<namespace>/<name>:<password>``.
    Empty without a relay."""
    if not relay_host:
        return ""
    return f"{relay_host} {owner.namespace}/{owner.name}:{password}\n"


def credentials_secret(
    owner: Owner,
    material: Material,
    passwd: str,
    relay_host: str = "",
    antispam_password: str = "",
) -> dict[str, Any]:
    """Password hashes (mailboxes: never plaintext), DKIM keys, the TLS key pair,
    the server's own password at the outbound relay (it is the client there) and,
    when the server trains the shared Rspamd, that controller's password."""
    data = {
        "passwd": passwd,
        HASHES_KEY: material.hashes_document(),
        "tls.crt": material.tls_cert,
        "tls.key": material.tls_key,
        RELAY_PASSWORD_KEY: material.relay_password,
        RELAY_HASH_KEY: material.relay_password_hash,
        RELAY_SASL_KEY: relay_sasl_map(relay_host, owner, material.relay_password),
        ANTISPAM_PASSWORD_KEY: antispam_password,
    }
    for domain, pem in sorted(material.dkim_keys.items()):
        data[dkim_key_name(domain)] = pem
    for domain, pem in sorted(material.dkim_ed25519_keys.items()):
        data[dkim_ed25519_key_name(domain)] = pem
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(owner, naming.credentials_secret(owner.name)),
        "stringData": data,
    }


def initial_passwords_secret(owner: Owner, passwords: dict[str, str]) -> dict[str, Any]:
    """Generated passwords, shown once: the operator never writes them again.

    `passwords.json` maps each address to its password. Delete the Secret once
    the passwords are handed over; the operator keeps only their hashes.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(
            owner,
            naming.initial_passwords_secret(owner.name),
            annotations={
                "vpes.io/description": "Generated mailbox passwords, shown once. Hand them "
                "to the customer, then delete this Secret."
            },
        ),
        "stringData": {"passwords.json": json.dumps(dict(sorted(passwords.items())), indent=1)},
    }
