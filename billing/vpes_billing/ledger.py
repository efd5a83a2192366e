"""Processed Stripe events, one ConfigMap each in the service's namespace.

Why ConfigMaps: they live in etcd, so they survive a restart, a crash and a
move of the service to another node; no database to run. One object per event
(named by a hash of its id) makes "is this event done?" a single GET, and
creating the record is atomic. An event is recorded only after its effects
are written, and every effect is idempotent, so a crash between the two means
one harmless redo, never a loss. A failed event is recorded too (what went
wrong, for a person) but does not count as processed: Stripe's next delivery is
handled again. Records are swept after `event_record_days`
(Stripe stops retrying an event after three days).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from vpes_operator.clients.kube import Kube

from . import naming as n

JSON = dict[str, Any]
KIND = "event"
FAILED = "failed"  # recorded, but not processed: handled again when delivered again


@dataclass(frozen=True)
class Record:
    event_id: str
    type: str
    outcome: str  # done, ignored, refused, failed (not final)
    message: str
    signup_key: str | None = None  # n.signup_key_digest: how the return page finds a refusal


class Ledger:
    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    def seen(self, event_id: str) -> bool:
        """Whether the event was processed. A failed event was not: its record says
        what went wrong, and the next delivery is handled again."""
        obj = self.kube.get("v1", "ConfigMap", self.namespace, n.event_record_name(event_id))
        return obj is not None and (obj.get("data") or {}).get("outcome") != FAILED

    def record(self, rec: Record) -> None:
        labels = {
            n.LABEL_MANAGED_BY: n.MANAGED_BY,
            n.LABEL_KIND: KIND,
            f"{n.PREFIX}/outcome": rec.outcome,
        }
        if rec.signup_key:
            labels[n.LABEL_SIGNUP_KEY] = rec.signup_key
        self.kube.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": n.event_record_name(rec.event_id),
                    "namespace": self.namespace,
                    "labels": labels,
                },
                "data": {
                    "id": rec.event_id,
                    "type": rec.type,
                    "outcome": rec.outcome,
                    "message": rec.message,
                    "at": str(int(time.time())),
                },
            }
        )

    def refusal(self, signup_key: str) -> str | None:
        """The message for the customer if their paid checkout was refused
        (`signup_key`: n.signup_key_digest of the signup's key)."""
        selector = (
            f"{n.LABEL_KIND}={KIND},{n.PREFIX}/outcome=refused,{n.LABEL_SIGNUP_KEY}={signup_key}"
        )
        for obj in self.kube.list("v1", "ConfigMap", self.namespace, labels=selector):
            return str((obj.get("data") or {}).get("message", ""))
        return None

    def sweep(self, max_age_seconds: float) -> int:
        cutoff = time.time() - max_age_seconds
        removed = 0
        selector = f"{n.LABEL_KIND}={KIND},{n.LABEL_MANAGED_BY}={n.MANAGED_BY}"
        for obj in self.kube.list("v1", "ConfigMap", self.namespace, labels=selector):
            at = int((obj.get("data") or {}).get("at", "0") or 0)
            if at < cutoff and self.kube.delete(
                "v1", "ConfigMap", self.namespace, obj["metadata"]["name"]
            ):
                removed += 1
        return removed
