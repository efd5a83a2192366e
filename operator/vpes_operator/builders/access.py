"""What the customer panel needs in a customer's namespace, as pure builders.

The panel never reads or writes a customer's objects as itself: it impersonates
the namespace's ServiceAccount `vpes-customer`, which the chart's ClusterRole
(`<release>-customer`) lets reach only that namespace's servers, backups,
restores and two Secrets. The panel's own ServiceAccount may impersonate that
one ServiceAccount in that one namespace (`<release>-panel-impersonate`, bound
here). So the API server itself keeps one customer out of another's objects.

`vpes-logins` holds each server's mailbox password hashes (key `<server>.json`),
the ones the tenant checks: the panel checks a login against them. `vpes-panel`
is the panel's own store in the namespace (TOTP secrets, the hashes of the
passwords it set); the operator makes it, empty, so that the customer role
needs no `create` on Secrets (which RBAC cannot narrow to one name).
"""

from __future__ import annotations

import json
from typing import Any

from .. import naming
from ..settings import OperatorSettings

JSON = dict[str, Any]
CUSTOMER_SA = "vpes-customer"
CUSTOMER_BINDING = "vpes-customer"
PANEL_BINDING = "vpes-panel"
LOGINS_SECRET = "vpes-logins"  # noqa: S105 (a Secret's name)
PANEL_SECRET = "vpes-panel"  # noqa: S105 (a Secret's name)
RBAC = "rbac.authorization.k8s.io/v1"


def _meta(name: str, namespace: str) -> JSON:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/part-of": "vpes",
            "app.kubernetes.io/managed-by": naming.MANAGED_BY,
            naming.LABEL_COMPONENT: "panel-access",
        },
    }


def enabled(settings: OperatorSettings) -> bool:
    return bool(settings.panel_service_account)


def access_objects(settings: OperatorSettings, namespace: str) -> list[JSON]:
    """The ServiceAccount the panel acts as in `namespace`, and the two bindings."""
    panel_ns = settings.panel_namespace or settings.operator_namespace
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(CUSTOMER_SA, namespace),
            # Nothing runs as it: it exists to be impersonated, never to hold a token.
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": RBAC,
            "kind": "RoleBinding",
            "metadata": _meta(CUSTOMER_BINDING, namespace),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": settings.customer_cluster_role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": CUSTOMER_SA, "namespace": namespace}],
        },
        {
            "apiVersion": RBAC,
            "kind": "RoleBinding",
            "metadata": _meta(PANEL_BINDING, namespace),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": settings.panel_impersonate_cluster_role,
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": settings.panel_service_account,
                    "namespace": panel_ns,
                }
            ],
        },
    ]


def secret(name: str, namespace: str) -> JSON:
    """An empty Secret of the panel's (created once, never overwritten)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name, namespace), "data": {}}


def logins_key(server: str) -> str:
    return f"{server}.json"


def logins_document(hashes: dict[str, str]) -> str:
    """The server's mailbox → password hash, as `vpes-logins` holds it."""
    return json.dumps({a: hashes[a] for a in sorted(hashes)}, sort_keys=True)
