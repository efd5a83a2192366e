"""StatefulSet events: a server's readiness follows its pod."""

from __future__ import annotations

from typing import Any

import kopf

from .. import naming, reconcile
from ..builders.meta import owner_uid, server_reference
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
        uid = owner_uid(dict(body.get("metadata", {})))
        post(server_reference(server, namespace, uid), outcome.events)
