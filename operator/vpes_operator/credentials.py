"""Gather the secret material of a server: keep what exists, make only what is missing.

Key generation and password hashing are slow on purpose, so a reconcile reuses
everything already stored in the server's credentials Secret and makes new
material only for a new domain, a new mailbox or a changed password.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from . import crypto
from .certs.mailhost import serves
from .errors import WaitingError
from .models.conditions import Reason
from .models.server import PersonalMailServerSpec

# Reads one key of a Secret in the server's namespace: (name, key) →
# (value, resourceVersion), or None when the Secret or the key is missing.
SecretReader = Callable[[str, str], tuple[str, str] | None]

HASHES_KEY = "password-hashes.json"
# The server's password at the outbound relay (its SASL login is "<namespace>/<name>"),
# made once and never again while stored, and its hash (what the relay's shards hold).
RELAY_PASSWORD_KEY = "relay-password"  # noqa: S105 (a key name)
RELAY_HASH_KEY = "relay-password-hash"
GENERATED = "generated"
# A bootstrap certificate is replaced this long before it expires.
CERT_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass
class Material:
    """Everything secret a server's build needs."""

    password_hashes: dict[str, str] = field(default_factory=dict)
    password_sources: dict[str, str] = field(default_factory=dict)
    generated_passwords: dict[str, str] = field(default_factory=dict)
    dkim_keys: dict[str, str] = field(default_factory=dict)
    # Ed25519 DKIM keys, signed with alongside RSA where the provider enables them.
    dkim_ed25519_keys: dict[str, str] = field(default_factory=dict)
    tls_cert: str = ""
    tls_key: str = ""
    relay_password: str = ""
    relay_password_hash: str = ""  # {SSHA512}

    def hashes_document(self) -> str:
        doc = {
            a: {"hash": self.password_hashes[a], "source": self.password_sources[a]}
            for a in sorted(self.password_hashes)
        }
        return json.dumps(doc, sort_keys=True, indent=1)


def dkim_key_name(domain: str) -> str:
    return f"dkim-{domain}.key"


def dkim_ed25519_key_name(domain: str) -> str:
    return f"dkim-ed25519-{domain}.key"


def tls_names(spec: PersonalMailServerSpec, service_host: str) -> list[str]:
    return [service_host, *(f"mail.{d}" for d in sorted(spec.domains))]


def gather(
    spec: PersonalMailServerSpec,
    stored: dict[str, str],
    read_secret: SecretReader,
    *,
    service_host: str,
    bcrypt_rounds: int,
    dkim_bits: int,
    dkim_ed25519: bool = False,
    now: dt.datetime | None = None,
    shown: dict[str, str] | None = None,
) -> Material:
    """The material for `spec`, from what is `stored` (decoded Secret data) plus what is new.

    `shown` holds the generated passwords the initial-passwords Secret still
    shows: a mailbox with no stored hash yet takes its password from there
    rather than a new one, so a reconcile cut short between the two Secrets
    never leaves a shown password that does not work.
    """
    m = Material()
    previous = _previous_hashes(stored)
    missing, invalid = _passwords(m, spec, previous, read_secret, bcrypt_rounds, shown or {})
    for domain in sorted(spec.domains):
        pem = stored.get(dkim_key_name(domain))
        m.dkim_keys[domain] = pem or crypto.generate_dkim_key(dkim_bits)
        if dkim_ed25519:
            ed = stored.get(dkim_ed25519_key_name(domain))
            m.dkim_ed25519_keys[domain] = ed or crypto.generate_dkim_ed25519_key()
    m.tls_cert, m.tls_key = _certificate(tls_names(spec, service_host), stored, now, spec.mail_host)
    m.relay_password, m.relay_password_hash = relay_password(stored)
    if missing or invalid:
        raise MissingPasswordsError(m, missing, invalid)
    return m


def _passwords(
    m: Material,
    spec: PersonalMailServerSpec,
    previous: dict[str, dict[str, str]],
    read_secret: SecretReader,
    bcrypt_rounds: int,
    shown: dict[str, str],
) -> tuple[list[str], list[str]]:
    """Each mailbox's password hash into `m`; the mailboxes whose Secret is missing, and
    those whose password is unusable (both keep their previous hash meanwhile)."""
    missing: list[str] = []
    invalid: list[str] = []
    for mailbox in spec.mailboxes:
        address = mailbox.address
        old = previous.get(address)
        ref = mailbox.password_secret_ref
        if ref is None:
            if old and old["source"] == GENERATED:
                m.password_hashes[address] = old["hash"]
            else:
                password = shown.get(address) or crypto.generate_password()
                m.generated_passwords[address] = password
                m.password_hashes[address] = crypto.hash_password(password, bcrypt_rounds)
            m.password_sources[address] = GENERATED
            continue
        found = read_secret(ref.name, ref.key)
        value, version = found if found is not None else ("", "")
        if found is None or not value.strip():
            if found is None:
                missing.append(f"{address} (Secret {ref.name!r}, key {ref.key!r})")
            else:
                invalid.append(f"{address} (Secret {ref.name!r}, key {ref.key!r} is empty)")
            if old:  # keep the last good password working meanwhile
                m.password_hashes[address] = old["hash"]
                m.password_sources[address] = old["source"]
            continue
        source = f"secret:{ref.name}/{ref.key}@{version}"
        if crypto.is_password_hash(value.strip()):
            m.password_hashes[address] = value.strip()  # set by the panel: already hashed
        elif old and old["source"] == source:
            m.password_hashes[address] = old["hash"]
        else:
            m.password_hashes[address] = crypto.hash_password(value, bcrypt_rounds)
        m.password_sources[address] = source
    return missing, invalid


def relay_password(stored: dict[str, str]) -> tuple[str, str]:
    """The stored relay password and its hash (made only when missing; the hash again
    only when it does not match: the same hash every time keeps the shards still)."""
    password = stored.get(RELAY_PASSWORD_KEY, "").strip() or crypto.generate_password(32)
    hashed = stored.get(RELAY_HASH_KEY, "")
    if not crypto.verify_ssha512(password, hashed):
        hashed = crypto.ssha512(password)
    return password, hashed


def _certificate(
    names: list[str], stored: dict[str, str], now: dt.datetime | None, mail_host: str | None
) -> tuple[str, str]:
    """The stored pair while it is an issuer's valid one for the server's mail host
    (copied there by the certificates pass, `mailhost.py`: its issuer renews it, so it
    stays to its end), or the bootstrap certificate while it names `names` and is not
    due for renewal; a new self-signed one otherwise."""
    cert, key = stored.get("tls.crt", ""), stored.get("tls.key", "")
    now = now or dt.datetime.now(dt.UTC)
    bootstrap = bool(cert) and crypto.certificate_names(cert) == set(names)
    if not bootstrap and serves(cert, key, mail_host, now):
        return cert, key
    renew_at = now + CERT_RENEW_BEFORE
    if bootstrap and key and crypto.certificate_expires(cert) > renew_at:
        return cert, key
    return crypto.self_signed_certificate(names)


class MissingPasswordsError(WaitingError):
    """Some mailboxes name a password Secret that does not exist (yet)."""

    def __init__(self, material: Material, missing: list[str], invalid: list[str]) -> None:
        parts = []
        if missing:
            parts.append(
                "no password for " + ", ".join(missing) + ": create the Secret with that key "
                "in this namespace, or remove passwordSecretRef to have one generated"
            )
        if invalid:
            parts.append("unusable password for " + ", ".join(invalid) + ": set a password")
        super().__init__(
            Reason.PASSWORD_SECRET_MISSING if missing else Reason.PASSWORD_INVALID,
            "; ".join(parts) + ". Mailboxes keep their previous password meanwhile.",
            delay=60,
        )
        self.material = material


def _previous_hashes(stored: dict[str, str]) -> dict[str, dict[str, str]]:
    raw = stored.get(HASHES_KEY)
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {
        a: {"hash": str(v["hash"]), "source": str(v["source"])}
        for a, v in doc.items()
        if isinstance(v, dict) and "hash" in v and "source" in v
    }
