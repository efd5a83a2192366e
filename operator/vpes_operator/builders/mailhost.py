"""The cert-manager Certificate of a server's own mail host (spec.mailHost): pure.

Like the web names' Certificates (`builders.certificates`) it lives in the operator's
namespace with the same labels (so the same pass lists, sweeps and deletes it, with
its Secret), named after them with `-mail`: `web-<namespace>-<server>-<8 hex>-mail`,
which the chart's admission policy lets the operator write where its own ACME client
issues instead. Its Secret is copied into the server's own Secret (`mailhost.py`): a
pod mounts only Secrets of its own namespace.
"""

from __future__ import annotations

from typing import Any

from ..settings import OperatorSettings
from . import certificates

SUFFIX = "-mail"


def secret_name(namespace: str, server: str) -> str:
    """The name of the mail host's Certificate and of its Secret (never one of the web
    names' chunks: those end in a digest or `-<n>`)."""
    return certificates.base_name(namespace, server) + SUFFIX


def certificate(
    namespace: str, server: str, host: str, settings: OperatorSettings
) -> dict[str, Any]:
    """A Certificate for `host` alone, from the configured issuer."""
    name = secret_name(namespace, server)
    labels = certificates.labels(namespace, server)
    return {
        "apiVersion": certificates.CERTIFICATE_API,
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": settings.operator_namespace, "labels": labels},
        "spec": {
            "secretName": name,
            "dnsNames": [host],
            "issuerRef": {
                "name": settings.cert_manager_issuer_name,
                "kind": settings.cert_manager_issuer_kind,
                "group": settings.cert_manager_issuer_group,
            },
            "privateKey": {"rotationPolicy": "Always"},
            "secretTemplate": {"labels": dict(labels)},
        },
    }
