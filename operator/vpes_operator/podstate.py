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
from typing import Final

from .builders import dav
from .models.conditions import Reason
from .models.kube import PersistentVolumeClaim, Pod

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


def blocker(pod: Pod | None, claim: PersistentVolumeClaim | None) -> Blocker | None:
    """What keeps the pod from running, or None when nothing is known to (or no pod)."""
    if pod is None:
        return None
    image = _image_problem(pod)
    if image is not None:
        return image
    scheduled = next((c for c in pod.status.conditions if c.type == "PodScheduled"), None)
    if scheduled is None or scheduled.status != "False":
        return None
    why = scheduled.message or scheduled.reason or "no reason given"
    if claim is not None and claim.status.phase != "Bound":
        name, phase = claim.metadata.name, claim.status.phase
        storage_class = claim.spec.storage_class_name or "the default class"
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


def unscheduled(pod: Pod) -> bool:
    """The scheduler found no node for the pod (yet)."""
    return any(c.type == "PodScheduled" and c.status == "False" for c in pod.status.conditions)


# Container name -> what its image is and the setting that names it ("": the mail container).
IMAGES = {
    "": ("tenant", "tenant image"),
    dav.CONTAINER_NAME: ("calendar (CalDAV/CardDAV)", "dav image (VPES_DAV_IMAGE)"),
}


def _image_problem(pod: Pod) -> Blocker | None:
    node = pod.spec.node_name or "its node"
    for container in pod.status.container_statuses:
        waiting = container.state.waiting
        reason = waiting.reason if waiting is not None else None
        if waiting is not None and reason in IMAGE_REASONS:
            detail = str(waiting.message or reason)
            what, setting = IMAGES.get(container.name, IMAGES[""])
            return Blocker(
                Reason.IMAGE_UNAVAILABLE,
                f"the {what} image {container.image} is not available on {node} "
                f"({reason}: {detail}). Import it into that node's containerd, or set the "
                f"operator's {setting} to one the nodes have.",
            )
    return None
