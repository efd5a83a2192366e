"""Why a server's pod does not run, from the pod and its volume claim (pure).

A StatefulSet only says "0 of 1 ready". What keeps the pod from running is in
the pod itself (a container waiting on an image that is not there, a
PodScheduled condition the scheduler set False) and in the claim (Pending,
never bound). Each cause becomes the Ready condition's reason with a message
that says what to fix, instead of a silent "waiting for the pod".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

from .models.conditions import Reason

# Container waiting reasons of the kubelet that mean the image cannot be had.
IMAGE_REASONS = frozenset(
    {"ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName"}
)


class Unseen(enum.Enum):
    """The pod was not looked at (a reconcile, a StatefulSet event)."""

    TOKEN = enum.auto()


UNSEEN: Final = Unseen.TOKEN


@dataclass(frozen=True)
class Blocker:
    reason: str
    message: str


def blocker(pod: dict[str, Any] | None, claim: dict[str, Any] | None) -> Blocker | None:
    """What keeps the pod from running, or None when nothing is known to (or no pod)."""
    if pod is None:
        return None
    status = pod.get("status") or {}
    image = _image_problem(pod, status)
    if image is not None:
        return image
    scheduled = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None
    )
    if scheduled is None or scheduled.get("status") != "False":
        return None
    why = str(scheduled.get("message") or scheduled.get("reason") or "no reason given")
    phase = ((claim or {}).get("status") or {}).get("phase")
    if claim is not None and phase != "Bound":
        name = claim["metadata"]["name"]
        storage_class = (claim.get("spec") or {}).get("storageClassName") or "the default class"
        return Blocker(
            Reason.VOLUME_NOT_BOUND,
            f"the mail volume claim {name} is {phase or 'not bound'} (storage class "
            f"{storage_class}), so the pod cannot be scheduled: {why}. Check that the "
            "storage class exists and its provisioner can make a volume of the plan's size.",
        )
    return Blocker(
        Reason.UNSCHEDULABLE,
        f"no node can run the mail server pod: {why}. Free or add capacity, or check "
        "the plan's requests and the nodes' taints.",
    )


def unscheduled(pod: dict[str, Any]) -> bool:
    """The scheduler found no node for the pod (yet)."""
    return any(
        c.get("type") == "PodScheduled" and c.get("status") == "False"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _image_problem(pod: dict[str, Any], status: dict[str, Any]) -> Blocker | None:
    node = (pod.get("spec") or {}).get("nodeName") or "its node"
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in IMAGE_REASONS:
            detail = str(waiting.get("message") or reason)
            return Blocker(
                Reason.IMAGE_UNAVAILABLE,
                f"the tenant image {container.get('image')} is not available on {node} "
                f"({reason}: {detail}). Import it into that node's containerd, or set the "
                "operator's tenant image to one the nodes have.",
            )
    return None
