"""Whether a certificate and key may serve a server's own mail host (spec.mailHost): pure.

The tenant serves whatever pair its Secret holds (`tls.crt`, `tls.key`). A pair that
an issuer made for the mail host (cert-manager's Secret, or the operator's own ACME
client's) replaces the self-signed bootstrap there only when `problem` finds nothing
wrong with it: the leaf names the host, is valid now, and the key is the leaf's own.
Anything else keeps what the tenant serves now: a broken pair in the tenant's Secret
would stop Postfix and Dovecot from taking new connections.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


def _leaf(cert_pem: str) -> x509.Certificate:
    """The first certificate of a PEM chain (the leaf: cert-manager and ACME put it
    first)."""
    return x509.load_pem_x509_certificates(cert_pem.encode())[0]


def _names(leaf: x509.Certificate) -> set[str]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {n.lower() for n in san.get_values_for_type(x509.DNSName)}


def _public(key: PrivateKeyTypes) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def problem(cert_pem: str, key_pem: str, host: str, now: dt.datetime) -> str | None:
    """What keeps the pair from serving `host` now (None: nothing, it may)."""
    if not cert_pem.strip() or not key_pem.strip():
        return "no certificate or no key"
    try:
        leaf = _leaf(cert_pem)
    except ValueError:
        return "the certificate cannot be read"
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return "the key cannot be read"
    if host.lower() not in _names(leaf):
        return f"the certificate does not name {host}"
    if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc:
        return "the certificate is not valid now (expired or not yet valid)"
    leaf_key = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if _public(key) != leaf_key:
        return "the key is not the certificate's"
    return None


def serves(cert_pem: str, key_pem: str, host: str | None, now: dt.datetime) -> bool:
    """Whether the pair may serve `host` (None: no mail host, so no)."""
    return host is not None and problem(cert_pem, key_pem, host, now) is None
