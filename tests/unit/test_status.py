"""The status of a PersonalMailServer as a function of its StatefulSet and Provisioned."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from vpes_operator import conditions, status
from vpes_operator.clients.status import status_wire
from vpes_operator.conditions import Cond, Event, timestamp
from vpes_operator.models.kube import StatefulSet
from vpes_operator.models.server import Endpoints, PersonalMailServerStatus, Usage
from vpes_operator.status import PROVISIONED, READY, workload_ready

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def compute(
    previous: dict[str, Any], *, extra: dict[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """`status.compute` on the status as read, giving the status as written (wire form)."""
    extra = extra or {}
    new = status.compute(
        PersonalMailServerStatus.model_validate(previous),
        endpoints=Endpoints.model_validate(extra["endpoints"]) if "endpoints" in extra else None,
        usage=Usage.model_validate(extra["usage"]) if "usage" in extra else None,
        **kwargs,
    )
    return status_wire(new)


def find(wire: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in wire if c["type"] == type_), None)


def events(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[Event]:
    return conditions.events(conditions.parse(before), conditions.parse(after))


def sts(
    *,
    replicas: int = 1,
    ready: int = 1,
    updated: int | None = None,
    current: int | None = None,
    generation: int = 1,
    observed: int = 1,
) -> StatefulSet:
    """A StatefulSet as the API server returns it (only what readiness reads)."""
    return StatefulSet.model_validate(
        {
            "metadata": {"name": "alice-mail", "generation": generation},
            "spec": {"replicas": replicas},
            "status": {
                "observedGeneration": observed,
                "replicas": ready if current is None else current,
                "readyReplicas": ready,
                "updatedReplicas": ready if updated is None else updated,
            },
        }
    )


# The StatefulSet states a server goes through: (StatefulSet, spec.suspended).
STATES: dict[str, tuple[StatefulSet | None, bool]] = {
    "missing": (None, False),
    "not-ready": (sts(ready=0, current=1, updated=1), False),
    "stale": (sts(generation=2, observed=1), False),
    "suspending": (sts(replicas=0, ready=1), True),
    "suspended": (sts(replicas=0, ready=0, current=0), True),
    "ready": (sts(), False),
}

WAITING = Cond(PROVISIONED, False, "PasswordSecretMissing", "no password for alice@example.org")
PERMANENT = Cond(PROVISIONED, False, "PlanNotFound", "MailPlan 'gold' does not exist")
APPLIED = Cond(PROVISIONED, True, "Applied", "all objects of the server are applied")
PROVISIONED_STATES: dict[str, Cond | None] = {
    "none": None,
    "applied": APPLIED,
    "waiting": WAITING,
    "permanent": PERMANENT,
}

WORKLOAD = {
    # state: (ready, reason, message)
    "missing": (False, "WorkloadMissing", "the mail server's StatefulSet does not exist yet"),
    "not-ready": (False, "PodNotReady", "waiting for the mail server pod to be ready (0/1)"),
    "stale": (False, "Updating", "the mail server pod is being updated"),
    "suspending": (False, "Suspending", "the server's pod is stopping"),
    "suspended": (
        False,
        "Suspended",
        "the server is suspended: its pod is stopped, its mail kept",
    ),
    "ready": (True, "MailServerRunning", "Postfix and Dovecot are running"),
}


@pytest.mark.parametrize(("state", "expected"), WORKLOAD.items())
def test_workload_ready(state: str, expected: tuple[bool, str, str]) -> None:
    assert workload_ready(STATES[state][0]) == expected


@pytest.mark.parametrize(
    ("obj", "expected_reason"),
    [
        pytest.param(sts(ready=1, updated=0), "Updating", id="ready-old-revision"),
        pytest.param(
            StatefulSet.model_validate({"metadata": {"generation": 1}, "spec": {}}),
            "PodNotReady",
            id="no-status",
        ),
        pytest.param(
            StatefulSet.model_validate(
                {"metadata": {}, "spec": {}, "status": {"readyReplicas": 1, "updatedReplicas": 1}}
            ),
            "MailServerRunning",
            id="replicas-default-to-one",
        ),
        pytest.param(sts(ready=1, generation=3, observed=4), "MailServerRunning", id="ahead"),
        pytest.param(sts(replicas=0, ready=0, current=1), "Suspending", id="pod-terminating"),
    ],
)
def test_workload_ready_edges(obj: StatefulSet, expected_reason: str) -> None:
    ok, reason, _ = workload_ready(obj)
    assert reason == expected_reason
    assert ok is (expected_reason == "MailServerRunning")


def running_previous(cond: Cond) -> str:
    return f"running the previous configuration; {cond.reason}: {cond.message}"


def failure(cond: Cond) -> str:
    return f"{cond.reason}: {cond.message}"


# (StatefulSet state, Provisioned) → (phase, Ready status, Ready reason, status.message).
# `None` for the reason or message means "the workload's own" (WORKLOAD above).
TABLE: list[tuple[str, str, str, str, str | None, str | None]] = [
    # Never reconciled: the status only says what the workload does.
    ("missing", "none", "Pending", "False", None, None),
    ("not-ready", "none", "Pending", "False", None, None),
    ("stale", "none", "Pending", "False", None, None),
    ("suspending", "none", "Suspended", "False", None, None),
    ("suspended", "none", "Suspended", "False", None, None),
    ("ready", "none", "Ready", "True", None, None),
    # Applied: Provisioning until the pod is ready.
    ("missing", "applied", "Provisioning", "False", None, None),
    ("not-ready", "applied", "Provisioning", "False", None, None),
    ("stale", "applied", "Provisioning", "False", None, None),
    ("suspending", "applied", "Suspended", "False", None, None),
    ("suspended", "applied", "Suspended", "False", None, None),
    ("ready", "applied", "Ready", "True", None, None),
    # Waiting for something that clears up on its own: Pending, naming it.
    (
        "missing",
        "waiting",
        "Pending",
        "False",
        WAITING.reason,
        failure(WAITING),
    ),
    ("not-ready", "waiting", "Pending", "False", None, failure(WAITING)),
    ("stale", "waiting", "Pending", "False", None, failure(WAITING)),
    ("suspending", "waiting", "Pending", "False", None, failure(WAITING)),
    ("suspended", "waiting", "Pending", "False", None, failure(WAITING)),
    ("ready", "waiting", "Ready", "True", None, running_previous(WAITING)),
    # Bad input: Failed, naming it, unless the previous configuration still runs.
    (
        "missing",
        "permanent",
        "Failed",
        "False",
        PERMANENT.reason,
        failure(PERMANENT),
    ),
    ("not-ready", "permanent", "Failed", "False", None, failure(PERMANENT)),
    ("stale", "permanent", "Failed", "False", None, failure(PERMANENT)),
    ("suspending", "permanent", "Failed", "False", None, failure(PERMANENT)),
    ("suspended", "permanent", "Failed", "False", None, failure(PERMANENT)),
    ("ready", "permanent", "Ready", "True", None, running_previous(PERMANENT)),
]


@pytest.mark.parametrize(
    ("state", "prov", "phase", "ready_status", "ready_reason", "message"),
    TABLE,
    ids=[f"{r[0]}-{r[1]}" for r in TABLE],
)
def test_compute_table(
    state: str,
    prov: str,
    phase: str,
    ready_status: str,
    ready_reason: str | None,
    message: str | None,
) -> None:
    obj, suspended = STATES[state]
    _, w_reason, w_message = WORKLOAD[state]
    out = compute(
        {},
        generation=4,
        sts=obj,
        suspended=suspended,
        provisioned=PROVISIONED_STATES[prov],
        now=T0,
    )
    assert out["phase"] == phase
    ready = find(out["conditions"], READY)
    assert ready is not None
    assert ready["status"] == ready_status
    assert ready["reason"] == (ready_reason or w_reason)
    if ready_reason is not None:  # Ready borrows Provisioned's words when there is no workload
        assert ready["message"] == PROVISIONED_STATES[prov].message  # type: ignore[union-attr]
    else:
        assert ready["message"] == w_message
    assert out["message"] == (message or w_message)
    assert ready["observedGeneration"] == 4
    assert [c["type"] for c in out["conditions"]] == (
        [READY] if prov == "none" else [PROVISIONED, READY]
    )
    # What compute writes is a valid status of the CRD.
    PersonalMailServerStatus.model_validate(out)


def test_failed_new_spec_on_a_running_server_stays_ready_naming_the_problem() -> None:
    running = compute({}, generation=1, sts=sts(), suspended=False, provisioned=APPLIED, now=T0)
    assert running["phase"] == "Ready"
    # generation 2 refers to a plan that does not exist; the old pod keeps serving.
    after = compute(
        running, generation=2, sts=sts(), suspended=False, provisioned=PERMANENT, now=T1
    )
    assert after["phase"] == "Ready"
    assert "PlanNotFound" in after["message"]
    assert "MailPlan 'gold' does not exist" in after["message"]
    assert after["message"].startswith("running the previous configuration")
    prov = find(after["conditions"], PROVISIONED)
    assert prov is not None
    assert (prov["status"], prov["reason"]) == ("False", "PlanNotFound")
    assert prov["lastTransitionTime"] == timestamp(T1)
    ready = find(after["conditions"], READY)
    assert ready is not None
    assert ready["status"] == "True"
    assert ready["lastTransitionTime"] == timestamp(T0)  # Ready never flipped
    assert after["observedGeneration"] == 2


def test_workload_event_keeps_the_previous_provisioned_condition() -> None:
    """refresh_readiness passes provisioned=None: Provisioned and observedGeneration stay."""
    failed = compute({}, generation=2, sts=None, suspended=False, provisioned=PERMANENT, now=T0)
    assert failed["phase"] == "Failed"
    later = compute(failed, generation=3, sts=sts(), suspended=False, now=T1)
    assert find(later["conditions"], PROVISIONED) == find(failed["conditions"], PROVISIONED)
    assert later["observedGeneration"] == 2  # not the generation no reconcile has seen
    assert later["phase"] == "Ready"
    assert PERMANENT.message in later["message"]


def test_pod_becoming_ready_moves_ready_transition_time_once() -> None:
    first = compute(
        {},
        generation=1,
        sts=sts(ready=0, current=1, updated=1),
        suspended=False,
        provisioned=APPLIED,
        now=T0,
    )
    up = compute(first, generation=1, sts=sts(), suspended=False, now=T1)
    again = compute(up, generation=1, sts=sts(), suspended=False, now=T1 + dt.timedelta(hours=1))
    ready_times = [
        find(s["conditions"], READY)["lastTransitionTime"]  # type: ignore[index]
        for s in (first, up, again)
    ]
    assert ready_times == [timestamp(T0), timestamp(T1), timestamp(T1)]
    assert again == up  # nothing changed: nothing to write


def test_compute_keeps_other_status_fields_and_merges_extra() -> None:
    previous = {
        "dnsRecords": [
            {
                "domain": "example.org",
                "type": "MX",
                "name": "example.org",
                "value": "10 mx.vpes.test",
                "ttl": 3600,
            }
        ],
        "usage": {"mailboxes": 1, "domains": 1},
        "phase": "Pending",
        "message": "old",
    }
    extra = {"usage": {"mailboxes": 2, "domains": 1}, "endpoints": {"imapHost": "imap.vpes.test"}}
    out = compute(
        previous,
        generation=1,
        sts=sts(),
        suspended=False,
        provisioned=APPLIED,
        extra=extra,
        now=T0,
    )
    assert out["dnsRecords"] == previous["dnsRecords"]
    assert out["usage"] == extra["usage"]
    assert out["endpoints"] == extra["endpoints"]
    assert out["phase"] == "Ready"
    assert out["message"] == "Postfix and Dovecot are running"
    assert previous["phase"] == "Pending"  # the input is not mutated


def _c(type_: str, status_: str, reason: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status_,
        "reason": reason,
        "message": "m",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(
            [],
            [_c("Ready", "False", "PodNotReady")],
            [("Normal", "PodNotReady")],
            id="new-server-starting-is-normal",
        ),
        pytest.param(
            [_c("Ready", "True", "MailServerRunning")],
            [_c("Ready", "False", "PodNotReady")],
            [("Warning", "PodNotReady")],
            id="running-server-failing-is-a-warning",
        ),
        pytest.param(
            [],
            [_c("Provisioned", "False", "PlanNotFound")],
            [("Warning", "PlanNotFound")],
            id="bad-input-is-a-warning",
        ),
        pytest.param(
            [_c("Ready", "True", "MailServerRunning")],
            [_c("Ready", "False", "Suspended")],
            [("Normal", "Suspended")],
            id="suspending-on-request-is-normal",
        ),
        pytest.param(
            [_c("Ready", "False", "PodNotReady")],
            [_c("Ready", "True", "MailServerRunning")],
            [("Normal", "MailServerRunning")],
            id="becoming-ready",
        ),
        pytest.param(
            [_c("Ready", "True", "MailServerRunning")],
            [_c("Ready", "True", "MailServerRunning")],
            [],
            id="no-transition-no-event",
        ),
    ],
)
def test_events_for_transitions(
    before: list[dict[str, Any]], after: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    got = [(e.type, e.reason) for e in events(before, after)]
    assert got == expected
