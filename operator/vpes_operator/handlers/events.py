"""Kubernetes events for condition transitions (only transitions, never repeats)."""

from __future__ import annotations

from typing import Any

import kopf

GOOD_WHEN_TRUE = {
    "Ready",
    "Provisioned",
    "DNSPublished",
    "DNSVerified",
    "CertificateReady",
    "BackupHealthy",
    "Deliverable",
}


def post_transitions(body: Any, transitions: list[dict[str, Any]]) -> None:
    for c in transitions:
        good = (c["status"] == "True") == (c["type"] in GOOD_WHEN_TRUE)
        kopf.event(
            body,
            type="Normal" if good else "Warning",
            reason=str(c["reason"]),
            message=f"{c['type']}={c['status']}: {c['message']}",
        )
