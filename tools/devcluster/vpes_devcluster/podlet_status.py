"""A pod's status as the kubelet reports it: container statuses, phase, conditions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vpes_devcluster.kube import Obj
from vpes_devcluster.podlet_env import HOST_IP, POD_IP
from vpes_devcluster.podlet_podman import now
from vpes_devcluster.podlet_probe import Probe

MESSAGE_LIMIT = 4096  # bytes of a termination message the kubelet keeps


@dataclass
class ContainerRun:
    """What the podlet knows of one container of a pod, across its restarts."""

    spec: Obj
    init: bool = False
    cid: str | None = None  # the current podman container (running or just exited)
    dead: list[str] = field(default_factory=list)  # exited containers not removed yet
    created: float = 0.0  # monotonic time of the current container's ``podman run``
    runs: int = 0  # containers started so far
    restarts: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    image_id: str = ""
    probes: dict[str, Probe] = field(default_factory=dict)
    next_start: float = 0.0  # monotonic time before which no (re)start is tried
    backoff: float = 0.0
    termination: Path | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def terminated(self) -> Obj | None:
        value = self.state.get("terminated")
        return value if isinstance(value, dict) else None

    @property
    def succeeded(self) -> bool:
        return self.terminated is not None and self.terminated.get("exitCode") == 0

    @property
    def started(self) -> bool:
        probe = self.probes.get("startup")
        return self.running and (probe is None or probe.ok)

    @property
    def ready(self) -> bool:
        probe = self.probes.get("readiness")
        return self.started and (probe is None or probe.ok)

    def waiting(self, reason: str, message: str = "") -> None:
        detail: Obj = {"reason": reason}
        if message:
            detail["message"] = message
        self.state = {"waiting": detail}

    def status(self) -> Obj:
        out: Obj = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": self.image_id,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restarts,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.cid:
            out["containerID"] = f"podman://{self.cid}"
        return out


def read_message(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        with path.open("rb") as handle:
            return handle.read(MESSAGE_LIMIT).decode("utf-8", "replace")
    except OSError:
        return ""


def _init_phase(inits: Sequence[ContainerRun], policy: str) -> str | None:
    for run in inits:
        if run.succeeded:
            continue
        failed = run.terminated is not None
        return "Failed" if failed and policy == "Never" else "Pending"
    return None


def phase(inits: Sequence[ContainerRun], mains: Sequence[ContainerRun], policy: str) -> str:
    """The kubelet's getPhase, for containers this podlet runs itself."""
    pending = _init_phase(inits, policy)
    if pending is not None:
        return pending
    running = waiting = stopped = succeeded = 0
    for run in mains:
        if run.running:
            running += 1
        elif run.terminated is not None:
            stopped += 1
            succeeded += run.succeeded
        elif run.last_state.get("terminated"):
            stopped += 1  # waiting to restart
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    return "Failed" if policy == "Never" else "Running"


def _condition(kind: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    out: Obj = {"type": kind, "status": "True" if ok else "False"}
    if not ok and reason:
        out["reason"] = reason
    if not ok and message:
        out["message"] = message
    return out


def conditions(
    inits: Sequence[ContainerRun],
    mains: Sequence[ContainerRun],
    pod_phase: str,
    volumes_ready: bool,
) -> list[Obj]:
    """PodReadyToStartContainers, Initialized, ContainersReady and Ready (without
    lastTransitionTime; :class:`Transitions` adds it). PodScheduled is the scheduler's."""
    initialized = all(run.succeeded for run in inits)
    unready = [run.name for run in mains if not run.ready]
    if pod_phase in ("Succeeded", "Failed"):
        ready_reason, ready_message = "PodCompleted", ""
    else:
        ready_reason = "ContainersNotReady"
        ready_message = f"containers with unready status: [{' '.join(unready)}]"
    not_init = [run.name for run in inits if not run.succeeded]
    return [
        _condition("PodReadyToStartContainers", volumes_ready),
        _condition(
            "Initialized",
            initialized,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(not_init)}]",
        ),
        _condition("ContainersReady", not unready, ready_reason, ready_message),
        _condition("Ready", not unready, ready_reason, ready_message),
    ]


class Transitions:
    """lastTransitionTime of each condition: changes only when its status flips."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, str]] = {}

    def stamp(self, items: list[Obj]) -> list[Obj]:
        for item in items:
            status = str(item["status"])
            last = self._seen.get(item["type"])
            if last is None or last[0] != status:
                last = (status, now())
                self._seen[item["type"]] = last
            item["lastTransitionTime"] = last[1]
        return items


def pod_status(
    inits: Sequence[ContainerRun],
    mains: Sequence[ContainerRun],
    policy: str,
    volumes_ready: bool,
    start_time: str,
    transitions: Transitions,
) -> Obj:
    """The ``status`` of a strategic-merge patch of the pod's status subresource."""
    pod_phase = phase(inits, mains, policy)
    out: Obj = {
        "phase": pod_phase,
        "conditions": transitions.stamp(conditions(inits, mains, pod_phase, volumes_ready)),
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": POD_IP,
        "podIPs": [{"ip": POD_IP}],
        "startTime": start_time,
        "containerStatuses": [run.status() for run in mains],
    }
    if inits:
        out["initContainerStatuses"] = [run.status() for run in inits]
    return out
