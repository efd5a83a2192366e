"""The drift sweep: servers whose children were deleted or edited by hand are
reconciled again (see `drift.py`), every `drift_interval_seconds`; the DNS
ConfigMaps of servers that went without their cleanup get it, and are released.

A drifted server is "kicked" by writing the annotation `vpes.io/drift` (what
was found, and when) on it: kopf sees the change and runs the server's update
handler, serialised with every other handler of that server.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from .. import API_VERSION, drift, health, metrics, naming
from ..clients import inventory
from ..clients.kube import Kube
from ..dns import service
from ..models.common import ObjectMeta
from ..settings import OperatorSettings
from .background import background, repeat
from .dns import report_left

log = logging.getLogger(__name__)
ANNOTATION = f"{naming.PREFIX}/drift"


@dataclass
class Sweeper:
    kube: Kube
    settings: OperatorSettings
    namespaces: tuple[str, ...] = ()
    clock: Any = time.monotonic
    kicked: dict[str, float] = field(default_factory=dict)  # server uid → last kick
    reported: dict[tuple[str, str], str] = field(default_factory=dict)

    def children(self) -> dict[str, list[ObjectMeta]]:
        labels = f"app.kubernetes.io/managed-by={naming.MANAGED_BY}"
        return {
            child.kind: [
                meta
                for path in inventory.namespaced_paths(child.list_path, self.namespaces)
                for meta in inventory.list_metadata(self.kube, path, labels)
            ]
            for child in drift.CHILDREN
        }

    def sweep(self) -> list[drift.Drift]:
        """One pass: find the drifted servers and kick those not kicked lately."""
        servers = [
            drift.server_of(meta)
            for path in inventory.server_paths(self.namespaces)
            for meta in inventory.list_metadata(self.kube, path)
        ]
        children = self.children()
        self.release_orphans(children["ConfigMap"], [s.uid for s in servers])
        found = drift.find(servers, children, self.settings.field_manager, self.reported)
        # An edit a reconcile cannot take back is reported once per version of the child.
        self.reported = drift.edited_children(children, self.settings.field_manager)
        uids = {(s.namespace, s.name): s.uid for s in servers}
        now = self.clock()
        # A server whose reconcile cannot restore its children (an invalid spec)
        # is kicked again only after a few sweeps: its own condition says why.
        gap = 5 * self.settings.drift_interval_seconds
        kicked = []
        for d in found:
            uid = uids[(d.namespace, d.name)]
            if now - self.kicked.get(uid, -gap) < gap:
                continue
            self.kick(d)
            self.kicked[uid] = now
            kicked.append(d)
        self.kicked = {u: t for u, t in self.kicked.items() if u in uids.values()}
        return kicked

    def release_orphans(self, config_maps: list[ObjectMeta], uids: list[str]) -> None:
        for cm in drift.orphaned_dns(config_maps, uids):
            where = f"{cm.namespace}/{cm.name}"
            log.warning("DNS ConfigMap %s outlived its server: last cleanup, then released", where)
            problems = service.cleanup_orphan(self.kube, self.settings, cm)
            if problems:
                report_left(where, "; ".join(p.message for p in problems), len(problems))

    def kick(self, d: drift.Drift) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        log.info("server %s/%s drifted: %s; reconciling", d.namespace, d.name, d.reason)
        self.kube.patch_metadata(
            API_VERSION,
            "PersonalMailServer",
            d.namespace,
            d.name,
            {"annotations": {ANNOTATION: f"{stamp} {d.reason}"[:1000]}},
        )
        metrics.DRIFT_CORRECTIONS.inc()


def _sweep_forever(memo: Any) -> Coroutine[Any, Any, None]:
    sweeper = Sweeper(memo.kube, memo.settings, health.HEALTH.namespaces)
    every = sweeper.settings.drift_interval_seconds
    failed = f"the drift sweep failed; it runs again in {every:.0f}s"
    return repeat(sweeper.sweep, every, log=log, failed=failed, first=every)


background("drift_sweep", _sweep_forever)
