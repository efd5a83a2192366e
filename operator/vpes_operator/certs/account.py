"""The ACME account's key: made once, kept in a Secret of the operator's namespace.

The CA knows the account by this key, so every operator replica and every
restart must use the same one: the first to need it creates the Secret
(create, not apply: two replicas racing end with one key, the loser reads the
winner's), everyone after reads it. The key never appears in a log or an
error message.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC

from .. import naming
from ..clients.kube import ApiError, Kube
from ..models.kube import Secret
from .errors import ACMEConfigError

SECRET_NAME = "vpes-acme-account"  # noqa: S105 (a Secret's name)
KEY_FIELD = "account.key"
# ES256 (P-256): what every ACME CA accepts, and small.
ALGORITHM = ES256


class AccountKeyError(ACMEConfigError):
    """The account Secret exists but holds no usable key."""


@dataclass(frozen=True)
class AccountKey:
    jwk: JWK
    pem: bytes


def new_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def parse(pem: bytes, where: str) -> AccountKey:
    """The key from its PEM; AccountKeyError (without the key's bytes) when it is not one."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise AccountKeyError(
            f"{where} does not hold a PEM private key under {KEY_FIELD!r}: delete the Secret "
            "and the operator makes a new account"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise AccountKeyError(
            f"{where} holds a key that is not P-256 (ES256): delete the Secret and the "
            "operator makes a new account"
        )
    return AccountKey(JWKEC(key=key), pem)


def secret_body(namespace: str, pem: bytes) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": naming.MANAGED_BY,
                naming.LABEL_COMPONENT: "acme-account",
            },
        },
        "type": "Opaque",
        "data": {KEY_FIELD: base64.b64encode(pem).decode()},
    }


def load_or_create(kube: Kube, namespace: str) -> AccountKey:
    """The account key in Secret `<namespace>/vpes-acme-account`, made if there is none."""
    where = f"the Secret {namespace}/{SECRET_NAME}"
    found = kube.read(Secret, namespace, SECRET_NAME)
    if found is None:
        try:
            kube.create(secret_body(namespace, new_key_pem()))
        except ApiError as e:
            if e.status != 409:  # 409: another replica made it first; read theirs
                raise
        found = kube.read(Secret, namespace, SECRET_NAME)
        if found is None:
            raise AccountKeyError(f"{where} vanished right after it was created")
    raw = found.data.get(KEY_FIELD)
    if raw is None:
        raise AccountKeyError(f"{where} has no {KEY_FIELD!r}: delete it to make a new account")
    return parse(base64.b64decode(raw), where)
