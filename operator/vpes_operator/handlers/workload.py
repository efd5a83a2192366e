"""A server's readiness follows its pod (StatefulSet events), and says what keeps the
pod from running (a missing image, no node, a volume that never binds)."""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import kopf

from .. import health, naming, podstate, reconcile
from ..builders.meta import PMS, server_reference
from ..clients.kube import Kube
from ..models.common import ObjectMeta
from ..models.kube import PersistentVolumeClaim, Pod, StatefulSet
from .background import background, repeat
from .events import post

log = logging.getLogger(__name__)


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
        uid = ObjectMeta.model_validate(dict(body.metadata)).owner_uid(PMS)
        post(server_reference(server, namespace, uid), outcome.events)


@dataclass
class PodCheck:
    """What keeps pods from running, looked at every `pod_check_seconds`.

    Not a watch on pods: every pod event of a thousand starting servers would
    cost the operator memory (measured: +84 MiB at 300 servers) for the rare pod
    that is stuck. A stuck pod is Pending (no image, no node, no volume), so one
    list of the tenants' Pending pods per interval finds them all; a server whose
    cause went away is looked at once more and its Ready recomputed.
    """

    kube: Kube
    namespaces: tuple[str, ...] = ()
    blocked: dict[tuple[str, str], str] = field(default_factory=dict)  # → reason written

    def pending(self) -> dict[tuple[str, str], podstate.Blocker | None]:
        found: dict[tuple[str, str], podstate.Blocker | None] = {}
        selector = f"app.kubernetes.io/name={naming.TENANT_APP}"
        for ns in self.namespaces or (None,):
            pods = self.kube.read_list(Pod, ns, labels=selector, fields="status.phase=Pending")
            for pod in pods:
                meta = pod.metadata
                server = meta.labels.get(naming.LABEL_SERVER)
                if server and not meta.deletion_timestamp:
                    found[(meta.namespace, server)] = podstate.blocker(pod, self._claim(pod))
        return found

    def _claim(self, pod: Pod) -> PersistentVolumeClaim | None:
        if not podstate.unscheduled(pod):
            return None
        claim = naming.volume_claim(pod.metadata.labels[naming.LABEL_SERVER])
        return self.kube.read(PersistentVolumeClaim, pod.metadata.namespace, claim)

    def run(self) -> int:
        """One pass; how many servers' Ready was recomputed."""
        found = self.pending()
        changed = 0
        for key in sorted(set(found) | set(self.blocked)):
            cause = found.get(key)
            reason = cause.reason if cause is not None else None
            if self.blocked.get(key) == reason:
                continue
            namespace, server = key
            outcome = reconcile.refresh_readiness(self.kube, namespace, server, pod=cause)
            if outcome.events:
                sts = self.kube.read(StatefulSet, namespace, naming.statefulset(server))
                uid = sts.metadata.owner_uid(PMS) if sts else ""
                post(server_reference(server, namespace, uid), outcome.events)
            if reason is None:
                self.blocked.pop(key, None)
            else:
                self.blocked[key] = reason
            changed += 1
        return changed


def _check_forever(memo: Any) -> Coroutine[Any, Any, None]:
    check = PodCheck(memo.kube, health.HEALTH.namespaces)
    every = memo.settings.pod_check_seconds
    failed = f"looking at the tenants' pending pods failed; again in {every:.0f}s"
    return repeat(check.run, every, log=log, failed=failed)


background("pod_check", _check_forever)
