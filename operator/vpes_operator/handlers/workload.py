"""StatefulSet and pod events: a server's readiness follows its pod, and says what
keeps the pod from running (a missing image, no node, a volume that never binds)."""

from __future__ import annotations

import threading
from typing import Any

import kopf

from .. import naming, podstate, reconcile
from ..builders.meta import owner_uid, server_reference
from .events import post


@kopf.on.event(
    "apps", "v1", "statefulsets", labels={"app.kubernetes.io/managed-by": naming.MANAGED_BY}
)
def statefulset_event(
    body: kopf.Body,
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
    outcome = reconcile.refresh_readiness(memo.kube, namespace, server)
    if outcome.events:
        uid = owner_uid(dict(body.get("metadata", {})))
        post(server_reference(server, namespace, uid), outcome.events)


# The cause last written per server (by uid): a pod event that changes nothing
# known costs no API call, so the pods of a thousand starting servers are cheap.
_BLOCKED: dict[str, str] = {}
_BLOCKED_LOCK = threading.Lock()


@kopf.on.event("", "v1", "pods", labels={"app.kubernetes.io/name": naming.TENANT_APP})
def pod_event(
    body: kopf.Body, type: str, labels: kopf.Labels, namespace: str | None, memo: Any, **_: Any
) -> None:
    server = labels.get(naming.LABEL_SERVER)
    if not server or not namespace:
        return
    pod = None if type == "DELETED" else dict(body)
    claim = None
    if pod is not None and _unscheduled(pod):
        claim = memo.kube.get("v1", "PersistentVolumeClaim", namespace, naming.volume_claim(server))
    found = podstate.blocker(pod, claim)
    key = f"{namespace}/{server}"
    with _BLOCKED_LOCK:
        before = _BLOCKED.get(key)
        now = found.reason if found is not None else None
        if before == now:
            return  # nothing new: the common case
        if now is None:
            _BLOCKED.pop(key, None)
        else:
            _BLOCKED[key] = now
    outcome = reconcile.refresh_readiness(memo.kube, namespace, server, pod=found)
    if outcome.events:
        sts = memo.kube.get("apps/v1", "StatefulSet", namespace, naming.statefulset(server))
        uid = owner_uid(dict((sts or {}).get("metadata", {})))
        post(server_reference(server, namespace, uid), outcome.events)


def _unscheduled(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "PodScheduled" and c.get("status") == "False"
        for c in (pod.get("status") or {}).get("conditions") or []
    )
