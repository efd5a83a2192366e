"""StatefulSet events: a server's readiness follows its pod."""

from __future__ import annotations

from typing import Any

import kopf

from .. import GROUP, VERSION, naming, reconcile
from .events import post


@kopf.on.event(
    "apps", "v1", "statefulsets", labels={"app.kubernetes.io/managed-by": naming.MANAGED_BY}
)
def statefulset_event(
    body: kopf.Body,
    type: str,
    labels: kopf.Labels,
    namespace: str | None,
    memo: Any,
    **_: Any,
) -> None:
    server = labels.get(naming.LABEL_SERVER)
    # Also on the initial listing (no type): after a restart, a reconcile
    # that was cut short may not run again, and readiness must still follow.
    if not server or not namespace:
        return
    sts = None if type == "DELETED" else dict(body)
    outcome = reconcile.refresh_readiness(memo.kube, namespace, server, sts)
    if outcome.events:
        owner = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "PersonalMailServer",
            "metadata": {"name": server, "namespace": namespace, "uid": _owner_uid(body)},
        }
        post(owner, outcome.events)


def _owner_uid(body: kopf.Body) -> str:
    for ref in body.get("metadata", {}).get("ownerReferences", []):
        if ref.get("kind") == "PersonalMailServer":
            return str(ref.get("uid", ""))
    return ""
