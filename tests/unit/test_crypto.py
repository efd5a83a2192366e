"""Password hashes, DKIM keys and bootstrap certificates."""

from __future__ import annotations

import base64
import datetime as dt

import bcrypt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from vpes_operator import crypto

pytestmark = pytest.mark.unit

ROUNDS = 4


@pytest.mark.parametrize(
    "password",
    [
        "correct-horse-battery-staple",
        "with spaces and \"quotes\" and 'more'",
        "pässwörd-ünïcode-密码",
        "x" * 72,  # bcrypt's limit, exactly
        "!?",  # short; neither character can occur in a bcrypt hash
    ],
)
def test_hash_verify_round_trip(password: str) -> None:
    hashed = crypto.hash_password(password, ROUNDS)
    assert hashed.startswith("{BLF-CRYPT}$2y$04$")
    assert password not in hashed
    assert crypto.verify_password(password, hashed)
    assert not crypto.verify_password(password[:-1] + chr(ord(password[-1]) ^ 1), hashed)
    # An independent check: the part after the scheme is a genuine $2y$ bcrypt hash.
    assert bcrypt.checkpw(password.encode(), hashed.removeprefix("{BLF-CRYPT}").encode())


@pytest.mark.parametrize("rounds", [4, 5])
def test_hash_carries_its_cost(rounds: int) -> None:
    hashed = crypto.hash_password("secret", rounds)
    assert hashed.startswith(f"{{BLF-CRYPT}}$2y${rounds:02d}$")
    assert len(hashed) == len("{BLF-CRYPT}") + 60


def test_hash_is_salted() -> None:
    assert crypto.hash_password("same", ROUNDS) != crypto.hash_password("same", ROUNDS)


@pytest.mark.parametrize(
    ("password", "hashed"),
    [
        pytest.param("wrong", crypto.hash_password("right", ROUNDS), id="wrong-password"),
        pytest.param("Right", crypto.hash_password("right", ROUNDS), id="case-matters"),
        pytest.param(
            "right",
            crypto.hash_password("right", ROUNDS).removeprefix("{BLF-CRYPT}"),
            id="no-scheme-prefix",
        ),
        pytest.param(
            "right",
            "{BLF-CRYPT}$2b$" + crypto.hash_password("right", ROUNDS)[len("{BLF-CRYPT}$2y$") :],
            id="2b-variant",
        ),
        pytest.param("right", "{SHA512-CRYPT}$6$abc$def", id="other-scheme"),
        pytest.param("right", "", id="empty-hash"),
    ],
)
def test_verify_refuses(password: str, hashed: str) -> None:
    assert crypto.verify_password(password, hashed) is False


def test_verify_answers_false_for_an_overlong_candidate() -> None:
    hashed = crypto.hash_password("right", ROUNDS)
    assert crypto.verify_password("y" * 73, hashed) is False


def test_empty_password_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        crypto.hash_password("", ROUNDS)


@pytest.mark.parametrize("length", [12, 20, 32])
def test_generated_passwords(length: int) -> None:
    passwords = {crypto.generate_password(length) for _ in range(50)}
    assert len(passwords) == 50
    for p in passwords:
        assert len(p) == length
        assert set(p) <= set(crypto.PASSWORD_ALPHABET)


def test_generated_password_default_length() -> None:
    assert len(crypto.generate_password()) == 20


@pytest.fixture(scope="module")
def dkim_pem() -> str:
    return crypto.generate_dkim_key(1024)


def test_dkim_key_is_pkcs8_rsa(dkim_pem: str) -> None:
    assert dkim_pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(dkim_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 1024
    assert key.private_numbers().public_numbers.e == 65537


def test_dkim_record_parses(dkim_pem: str) -> None:
    record = crypto.dkim_public_record(dkim_pem)
    assert "\n" not in record
    tags = dict(part.strip().split("=", 1) for part in record.split(";"))
    assert tags["v"] == "DKIM1"
    assert tags["k"] == "rsa"
    assert list(tags) == ["v", "k", "p"]  # v= must come first (RFC 6376 3.6.1)
    der = base64.b64decode(tags["p"], validate=True)
    public = serialization.load_der_public_key(der)
    private = serialization.load_pem_private_key(dkim_pem.encode(), password=None)
    assert isinstance(public, rsa.RSAPublicKey)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert public.public_numbers() == private.public_key().public_numbers()


def test_dkim_keys_differ() -> None:
    assert crypto.generate_dkim_key(1024) != crypto.generate_dkim_key(1024)


NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "names",
    [
        ["alice-mail.customer-alice.svc"],
        ["alice-mail.customer-alice.svc", "mail.example.org", "mail.xn--bcher-kva.example"],
    ],
)
def test_self_signed_certificate_names(names: list[str]) -> None:
    cert_pem, key_pem = crypto.self_signed_certificate(names, days=10, now=NOW)
    assert crypto.certificate_names(cert_pem) == set(names)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == names[0]
    assert cert.issuer == cert.subject
    # The key is the certificate's own.
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    # A server certificate, not a CA.
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_self_signed_certificate_validity() -> None:
    cert_pem, _ = crypto.self_signed_certificate(["a.example.org"], days=10, now=NOW)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    start = NOW - dt.timedelta(minutes=5)  # tolerate a little clock skew
    assert cert.not_valid_before_utc == start
    assert crypto.certificate_expires(cert_pem) == start + dt.timedelta(days=10)


def test_certificate_without_names_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one name"):
        crypto.self_signed_certificate([])


def test_certificate_names_of_a_certificate_without_san() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no-san.example.org")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    assert crypto.certificate_names(pem) == set()


def test_ed25519_dkim_record_is_the_raw_public_key() -> None:
    """RFC 8463: k=ed25519 and p= the base64 of the 32-byte public key."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = crypto.generate_dkim_ed25519_key()
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    value = crypto.dkim_public_record(pem)
    assert value.startswith("v=DKIM1; k=ed25519; p=")
    raw = base64.b64decode(value.split("p=", 1)[1])
    assert len(raw) == 32
    assert raw == key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
