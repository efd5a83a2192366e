"""The status of a PersonalMailServer, as a pure function of what was observed."""

from __future__ import annotations

import datetime as dt

from . import storage
from .conditions import Cond, find, set_condition
from .models.conditions import (
    POD_BLOCKED,
    Condition,
    ConditionType,
    Permanence,
    Reason,
    permanence,
)
from .models.kube import StatefulSet
from .models.server import Endpoints, PersonalMailServerStatus, Phase, Usage
from .podstate import UNSEEN, Blocker, Unseen

PROVISIONED = ConditionType.PROVISIONED
READY = ConditionType.READY


def workload_ready(sts: StatefulSet | None) -> tuple[bool, str, str]:
    """(ready, reason, message) of a server's StatefulSet."""
    if sts is None:
        return False, Reason.WORKLOAD_MISSING, "the mail server's StatefulSet does not exist yet"
    status = sts.status
    want = sts.spec.replicas
    ready = status.ready_replicas
    current = status.observed_generation >= (sts.metadata.generation or 0)
    updated = status.updated_replicas
    if want == 0:
        if ready == 0 and status.replicas == 0:
            return (
                False,
                Reason.SUSPENDED,
                "the server is suspended: its pod is stopped, its mail kept",
            )
        return False, Reason.SUSPENDING, "the server's pod is stopping"
    if current and ready >= want and updated >= want:
        return True, Reason.MAIL_SERVER_RUNNING, "Postfix and Dovecot are running"
    if ready >= want:
        return False, Reason.UPDATING, "the mail server pod is being updated"
    return (
        False,
        Reason.POD_NOT_READY,
        f"waiting for the mail server pod to be ready ({ready}/{want})",
    )


def compute(
    previous: PersonalMailServerStatus,
    *,
    generation: int,
    sts: StatefulSet | None,
    suspended: bool,
    provisioned: Cond | None = None,
    endpoints: Endpoints | None = None,
    usage: Usage | None = None,
    storage_limits: storage.Limits | None = None,
    now: dt.datetime,
    restoring: str | None = None,
    pod: Blocker | Unseen | None = UNSEEN,
) -> PersonalMailServerStatus:
    """The new status from the previous one and what was observed.

    `pod` is what keeps the pod from running, from a pod event (None: nothing);
    UNSEEN (a reconcile or a StatefulSet event) keeps the cause Ready last named.

    `provisioned` is given by a reconcile (None keeps the previous one, as a
    workload event does); Ready comes from the StatefulSet; phase and message
    summarise the first thing that is wrong, in order. `usage` (the spec's
    side: counts and quotas) keeps the figures last measured in the pod, and
    with `storage_limits` StorageHealthy is computed again (independent of
    Ready and the phase: a full volume defers mail, the server still runs).
    """
    conditions = list(previous.conditions)
    if provisioned is not None:
        conditions = set_condition(conditions, provisioned, generation=generation, now=now)
    prov = find(conditions, PROVISIONED)
    ok, reason, message = workload_ready(sts)
    if not ok and reason == Reason.POD_NOT_READY:
        reason, message = _blocked(previous, pod, reason, message)
    if restoring and not ok:
        reason, message = (
            Reason.RESTORING,
            f"MailRestore {restoring} is restoring the server's mail",
        )
    if prov is not None and prov.status != "True" and sts is None:
        ok, reason, message = False, prov.reason, prov.message
    conditions = set_condition(
        conditions, Cond(READY, ok, reason, message), generation=generation, now=now
    )
    phase, summary = _phase(prov, ok, message, suspended)
    if not ok and reason in POD_BLOCKED and phase is Phase.PROVISIONING:
        phase, summary = Phase.FAILED, f"{reason}: {message}"
    if restoring and not ok:
        phase, summary = Phase.RESTORING, message
    update: dict[str, object] = {"conditions": conditions, "phase": phase.value, "message": summary}
    if endpoints is not None:
        update["endpoints"] = endpoints
    if usage is not None:
        usage = storage.keep_measured(usage, previous.usage)
        update["usage"] = usage
        if storage_limits is not None:
            cond = storage.condition(usage, storage_limits, now=now)
            update["conditions"] = set_condition(conditions, cond, generation=generation, now=now)
    if provisioned is not None:
        update["observed_generation"] = generation
    return previous.model_copy(update=update)


def _blocked(
    previous: PersonalMailServerStatus, pod: Blocker | Unseen | None, reason: str, message: str
) -> tuple[str, str]:
    """Ready's reason while the pod is not ready: the cause a pod event found, if any."""
    if isinstance(pod, Blocker):
        return pod.reason, pod.message
    if pod is UNSEEN:
        before = find(previous.conditions, READY)
        if before is not None and before.status != "True" and before.reason in POD_BLOCKED:
            return before.reason, before.message
    return reason, message


def _phase(prov: Condition | None, ready: bool, message: str, suspended: bool) -> tuple[Phase, str]:
    if prov is not None and prov.status != "True":
        text = f"{prov.reason}: {prov.message}"
        if ready:
            return Phase.READY, f"running the previous configuration; {text}"
        waiting = permanence(prov.reason) is Permanence.WAITING
        return (Phase.PENDING if waiting else Phase.FAILED), text
    if suspended:
        return Phase.SUSPENDED, message
    if ready:
        return Phase.READY, message
    if prov is None:
        return Phase.PENDING, message
    return Phase.PROVISIONING, message
