"""What keeps a server's pod from running becomes Ready's reason (podstate + status)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from vpes_operator import status
from vpes_operator.clients.status import status_wire
from vpes_operator.conditions import Cond
from vpes_operator.models.conditions import Reason
from vpes_operator.models.kube import PersistentVolumeClaim, Pod, StatefulSet
from vpes_operator.models.server import PersonalMailServerStatus
from vpes_operator.podstate import Blocker, blocker

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
APPLIED = Cond(status.PROVISIONED, True, Reason.APPLIED, "applied")
NOT_READY: dict[str, Any] = {
    "metadata": {"name": "alice-mail", "generation": 1},
    "spec": {"replicas": 1},
    "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 0, "updatedReplicas": 1},
}
NOT_READY_STS = StatefulSet.model_validate(NOT_READY)
READY_STS = StatefulSet.model_validate(
    {**NOT_READY, "status": {**NOT_READY["status"], "readyReplicas": 1}}
)


def pod(*, waiting: str | None = None, unschedulable: str | None = None) -> Pod:
    st: dict[str, Any] = {"phase": "Pending", "conditions": []}
    if waiting:
        st["containerStatuses"] = [
            {
                "name": "mail",
                "image": "localhost/vpes-tenant:nope",
                "state": {
                    "waiting": {
                        "reason": waiting,
                        "message": "not present with pull policy of Never",
                    }
                },
            }
        ]
    if unschedulable:
        st["conditions"].append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        )
    return Pod.model_validate(
        {"metadata": {"name": "alice-mail-0"}, "spec": {"nodeName": "node-1"}, "status": st}
    )


def claim(phase: str) -> PersistentVolumeClaim:
    return PersistentVolumeClaim.model_validate(
        {
            "metadata": {"name": "alice-mail"},
            "spec": {"storageClassName": "fast"},
            "status": {"phase": phase},
        }
    )


@pytest.mark.parametrize("reason", ["ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff"])
def test_an_image_that_cannot_be_had_is_named_with_its_node(reason: str) -> None:
    found = blocker(pod(waiting=reason), None)
    assert found is not None and found.reason == Reason.IMAGE_UNAVAILABLE
    assert "localhost/vpes-tenant:nope" in found.message and "node-1" in found.message
    assert reason in found.message


def test_an_unbound_claim_is_the_cause_when_the_pod_cannot_be_scheduled() -> None:
    why = "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    found = blocker(pod(unschedulable=why), claim("Pending"))
    assert found is not None and found.reason == Reason.VOLUME_NOT_BOUND
    assert "alice-mail" in found.message and "fast" in found.message and why in found.message


def test_no_node_for_the_pod_is_unschedulable() -> None:
    why = "0/1 nodes are available: 1 Insufficient memory."
    found = blocker(pod(unschedulable=why), claim("Bound"))
    assert found == Blocker(Reason.UNSCHEDULABLE, found.message if found else "")
    assert found is not None and why in found.message


@pytest.mark.parametrize("waiting", [None, "ContainerCreating"])
def test_a_pod_on_its_normal_way_up_has_no_blocker(waiting: str | None) -> None:
    assert blocker(pod(waiting=waiting), None) is None
    assert blocker(None, None) is None


def compute(previous: PersonalMailServerStatus, **kwargs: Any) -> PersonalMailServerStatus:
    return status.compute(
        previous, generation=1, suspended=False, provisioned=APPLIED, now=T0, **kwargs
    )


def ready(st: PersonalMailServerStatus) -> dict[str, Any]:
    wire = status_wire(st)
    return next(c for c in wire["conditions"] if c["type"] == "Ready")


def test_the_cause_is_ready_s_reason_and_the_phase_failed_until_the_pod_runs() -> None:
    cause = blocker(pod(waiting="ErrImageNeverPull"), None)
    blocked = compute(PersonalMailServerStatus(), sts=NOT_READY_STS, pod=cause)
    assert ready(blocked)["reason"] == "ImageUnavailable"
    assert blocked.phase == "Failed" and "ImageUnavailable" in (blocked.message or "")
    # A reconcile or a StatefulSet event did not look at the pod: the cause stays.
    kept = compute(blocked, sts=NOT_READY_STS)
    assert ready(kept)["reason"] == "ImageUnavailable"
    # The pod event that finds nothing wrong any more clears it.
    cleared = compute(kept, sts=NOT_READY_STS, pod=None)
    assert ready(cleared)["reason"] == "PodNotReady" and cleared.phase == "Provisioning"
    # And a running pod is Ready whatever was said before.
    up = compute(kept, sts=READY_STS)
    assert ready(up)["status"] == "True" and up.phase == "Ready"
