"""Key, certificate and password material (the only non-deterministic inputs of a build)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
import string

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

PASSWORD_ALPHABET = string.ascii_letters + string.digits
BLF_PREFIX = "{BLF-CRYPT}"


def generate_password(length: int = 20) -> str:
    """A random password a person can type (about 119 bits at 20 characters)."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


BCRYPT_MAX_BYTES = 72


def _bcrypt_input(password: str) -> bytes:
    # bcrypt reads at most 72 bytes; Dovecot's crypt() ignores the rest, so
    # hashing the first 72 makes the same logins work on both sides.
    return password.encode()[:BCRYPT_MAX_BYTES]


def hash_password(password: str, rounds: int) -> str:
    """A Dovecot BLF-CRYPT hash ({BLF-CRYPT}$2y$...), never the plaintext."""
    if not password:
        raise ValueError("empty password")
    digest = bcrypt.hashpw(_bcrypt_input(password), bcrypt.gensalt(rounds=rounds, prefix=b"2b"))
    # Dovecot documents $2y$; libxcrypt treats $2b$ and $2y$ alike.
    return BLF_PREFIX + "$2y$" + digest.decode()[4:]


# A hash the tenant's Dovecot checks as it is: what the panel (and billing) store,
# so that a password they set is never written anywhere in plain text.
_GIVEN_HASH = re.compile(
    r"\{BLF-CRYPT\}\$2[aby]\$(0[4-9]|1[0-5])\$[./A-Za-z0-9]{53}"
    r"|\{ARGON2ID\}\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+"
)


def is_password_hash(value: str) -> bool:
    """Whether `value` is a Dovecot password hash (BLF-CRYPT or ARGON2ID) rather than a
    password: the Secret a mailbox's passwordSecretRef names may hold either."""
    return _GIVEN_HASH.fullmatch(value) is not None


def verify_password(password: str, hashed: str) -> bool:
    if not hashed.startswith(BLF_PREFIX + "$2y$"):
        return False
    raw = "$2b$" + hashed[len(BLF_PREFIX) + 4 :]
    return bcrypt.checkpw(_bcrypt_input(password), raw.encode())


SSHA512_PREFIX = "{SSHA512}"
SSHA512_SALT_BYTES = 16


def ssha512(password: str, salt: bytes | None = None) -> str:
    """Dovecot's SSHA512: ``{SSHA512}`` + base64(sha512(password + salt) + salt).

    Fast on purpose: the relay checks it on every connection, and the password is
    random (about 119 bits), so a slow hash would add nothing."""
    if not password:
        raise ValueError("empty password")
    salt = secrets.token_bytes(SSHA512_SALT_BYTES) if salt is None else salt
    digest = hashlib.sha512(password.encode() + salt).digest()
    return SSHA512_PREFIX + base64.b64encode(digest + salt).decode()


def verify_ssha512(password: str, hashed: str) -> bool:
    if not hashed.startswith(SSHA512_PREFIX):
        return False
    try:
        raw = base64.b64decode(hashed[len(SSHA512_PREFIX) :], validate=True)
    except ValueError:
        return False
    digest, salt = raw[:64], raw[64:]
    if len(digest) != 64:
        return False
    return hmac.compare_digest(hashlib.sha512(password.encode() + salt).digest(), digest)


def generate_dkim_key(bits: int) -> str:
    """An RSA private key in PKCS#8 PEM for DKIM signing."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def generate_dkim_ed25519_key() -> str:
    """An Ed25519 private key in PKCS#8 PEM for DKIM signing (RFC 8463)."""
    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def dkim_public_record(private_pem: str) -> str:
    """The DKIM TXT record value (v=DKIM1; k=rsa|ed25519; p=...) of a private key.

    RSA publishes the DER SubjectPublicKeyInfo; Ed25519 the raw 32-byte key
    (RFC 8463), both in base64.
    """
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def self_signed_certificate(
    names: list[str], days: int = 825, now: dt.datetime | None = None
) -> tuple[str, str]:
    """A bootstrap certificate (ECDSA P-256) for the given DNS names: (cert PEM, key PEM)."""
    if not names:
        raise ValueError("a certificate needs at least one name")
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert_pem, key_pem


def certificate_names(cert_pem: str) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return set(san.value.get_values_for_type(x509.DNSName))


def certificate_expires(cert_pem: str) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc
