"""What the certificate tests share: a minimal stand-in for cert-manager's Certificate
CRD, written for the tests (the schema is not the point: the objects the operator
makes, reads and deletes are), and a server's spec."""

from __future__ import annotations

import datetime as dt
from typing import Any

from vpes_devcluster.platform import OPERATOR_NAMESPACE
from vpes_operator.clients.kube import Kube

from .operator_support import wait_for

CRD_NAME = "certificates.cert-manager.io"
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": "cert-manager.io",
        "scope": "Namespaced",
        "names": {
            "plural": "certificates",
            "singular": "certificate",
            "kind": "Certificate",
            "listKind": "CertificateList",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def install_crd(api: Kube) -> None:
    api.apply(CRD)

    def established() -> bool:
        crd = api.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, CRD_NAME)
        conds = ((crd or {}).get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    wait_for(established, "the Certificate CRD established")


def remove_crd(api: Kube) -> None:
    api.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, CRD_NAME)
    wait_for(
        lambda: (
            api.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, CRD_NAME) is None
        ),
        "the Certificate CRD gone",
    )


def spec(plan: str, domains: list[str]) -> dict[str, Any]:
    """A server of `domains` whose records the customer publishes (no DNS provider)."""
    return {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": domains,
        "mailboxes": [{"address": f"a@{domains[0]}"}],
        "dns": {"mode": "Manual"},
    }


def set_status(api: Kube, name: str, status: dict[str, Any]) -> None:
    """Write a Certificate's status as cert-manager does (its status subresource)."""
    path = api.resource("cert-manager.io/v1", "Certificate").path(OPERATOR_NAMESPACE, name)
    api.request(
        "PATCH",
        path + "/status",
        body={"status": status},
        content_type="application/merge-patch+json",
    )


def ready(status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    """A Certificate's Ready condition as cert-manager writes it."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
        "observedGeneration": generation,
    }
