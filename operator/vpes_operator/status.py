"""The status of a PersonalMailServer, as a pure function of what was observed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .conditions import Cond, Conditions, find, set_condition, transitions
from .models.server import Phase

PROVISIONED = "Provisioned"
READY = "Ready"


def workload_ready(sts: dict[str, Any] | None) -> tuple[bool, str, str]:
    """(ready, reason, message) of a server's StatefulSet."""
    if sts is None:
        return False, "WorkloadMissing", "the mail server's StatefulSet does not exist yet"
    spec, status = sts.get("spec", {}), sts.get("status", {})
    want = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0) or 0)
    current = int(status.get("observedGeneration", 0) or 0) >= int(
        sts.get("metadata", {}).get("generation", 0)
    )
    updated = int(status.get("updatedReplicas", 0) or 0)
    if want == 0:
        if ready == 0 and int(status.get("replicas", 0) or 0) == 0:
            return False, "Suspended", "the server is suspended: its pod is stopped, its mail kept"
        return False, "Suspending", "the server's pod is stopping"
    if current and ready >= want and updated >= want:
        return True, "MailServerRunning", "Postfix and Dovecot are running"
    if ready >= want:
        return False, "Updating", "the mail server pod is being updated"
    return False, "PodNotReady", f"waiting for the mail server pod to be ready ({ready}/{want})"


def compute(
    previous: dict[str, Any],
    *,
    generation: int,
    sts: dict[str, Any] | None,
    suspended: bool,
    provisioned: Cond | None = None,
    extra: dict[str, Any] | None = None,
    now: dt.datetime,
    restoring: str | None = None,
) -> dict[str, Any]:
    """The new status from the previous one and what was observed.

    `provisioned` is given by a reconcile (None keeps the previous one, as a
    workload event does); Ready comes from the StatefulSet; phase and message
    summarise the first thing that is wrong, in order.
    """
    conditions: Conditions = list(previous.get("conditions", []))
    if provisioned is not None:
        conditions = set_condition(conditions, provisioned, generation=generation, now=now)
    prov = find(conditions, PROVISIONED)
    ok, reason, message = workload_ready(sts)
    if restoring and not ok:
        reason, message = "Restoring", f"MailRestore {restoring} is restoring the server's mail"
    if prov is not None and prov["status"] != "True" and sts is None:
        ok, reason, message = False, prov["reason"], prov["message"]
    conditions = set_condition(
        conditions, Cond(READY, ok, reason, message), generation=generation, now=now
    )
    phase, summary = _phase(prov, ok, reason, message, suspended)
    if restoring and not ok:
        phase, summary = Phase.RESTORING.value, message
    status: dict[str, Any] = {**previous, **(extra or {})}
    status.update(
        {
            "conditions": conditions,
            "phase": phase,
            "message": summary,
        }
    )
    if provisioned is not None:
        status["observedGeneration"] = generation
    return status


def _phase(
    prov: dict[str, Any] | None, ready: bool, reason: str, message: str, suspended: bool
) -> tuple[str, str]:
    failed = prov is not None and prov["status"] != "True"
    if failed:
        assert prov is not None
        text = f"{prov['reason']}: {prov['message']}"
        if ready:
            return Phase.READY.value, f"running the previous configuration; {text}"
        permanent = prov["reason"] not in WAITING_REASONS
        return (Phase.FAILED if permanent else Phase.PENDING).value, text
    if suspended:
        return Phase.SUSPENDED.value, message
    if ready:
        return Phase.READY.value, message
    if prov is None:
        return Phase.PENDING.value, message
    return Phase.PROVISIONING.value, message


# Reasons of a False Provisioned condition that clear up on their own.
WAITING_REASONS = {"PasswordSecretMissing", "PasswordInvalid", "ApiError"}


def changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return before != after


# Condition types that are good when True (the rest are good when False).
GOOD_WHEN_TRUE = {
    "Ready",
    "Provisioned",
    "DNSPublished",
    "DNSVerified",
    "CertificateReady",
    "BackupHealthy",
    "Deliverable",
}
# Reasons of a not-yet-good condition on the normal way up (or down, when asked).
PROGRESS_REASONS = {
    "PodNotReady",
    "Updating",
    "WorkloadMissing",
    "Suspending",
    "Suspended",
    "Restoring",
}


def events(before: Conditions, after: Conditions) -> list[dict[str, str]]:
    """One Kubernetes event per condition transition: type, reason, message.

    A Warning is for something wrong: a condition turning bad, or bad for a
    reason that is not simple progress (a new server's pod starting is Normal;
    a running server's pod failing is a Warning).
    """
    out = []
    for c in transitions(before, after):
        good = (c["status"] == "True") == (c["type"] in GOOD_WHEN_TRUE)
        old = find(before, c["type"])
        was_good = old is not None and (old["status"] == "True") == (c["type"] in GOOD_WHEN_TRUE)
        warning = not good and (c["reason"] not in PROGRESS_REASONS or was_good)
        if c["reason"] == "Suspended":
            warning = False
        out.append(
            {
                "type": "Warning" if warning else "Normal",
                "reason": str(c["reason"]),
                "message": f"{c['type']}={c['status']}: {c['message']}",
            }
        )
    return out
