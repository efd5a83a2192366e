"""The health gate of a fleet upgrade: a server counts as upgraded only when its pod
runs the new image and its SMTP and IMAP really answer, from the operator, through
the server's Service (its NetworkPolicy admits the operator on those two ports).

Behind a small interface (`Probe`) so the planner stays pure and a test without a
kubelet can stand in for the pod and the daemons.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Protocol

from .. import naming
from ..builders.network import service_host
from ..builders.workload import MAIL_CONTAINER
from ..clients.kube import Kube
from ..models.kube import Pod
from .planner import Health

# What the gate reads on connecting: (what, port, how the first line starts).
GREETINGS: tuple[tuple[str, int, str], ...] = (("SMTP", 25, "220"), ("IMAP", 143, "* OK"))


class Probe(Protocol):
    def check(self, namespace: str, server: str, image: str) -> Health:
        """Whether the server runs `image` and its mail services answer."""


def pod_verdict(pods: list[Pod], image: str) -> str | None:
    """Why no pod of the server runs `image` ready (None: one does)."""
    if not pods:
        return "no pod"
    for pod in pods:
        if pod.metadata.deletion_timestamp:
            continue
        spec = next((c for c in pod.spec.containers if c.name == MAIL_CONTAINER), None)
        state = next((c for c in pod.status.container_statuses if c.name == MAIL_CONTAINER), None)
        if spec is None or spec.image != image:
            continue
        if state is None or state.state.running is None:
            return f"its pod {pod.metadata.name} has not started the image's container yet"
        if not state.ready:
            return f"its pod {pod.metadata.name} runs the image but is not ready"
        return None
    return f"no pod runs {image} yet"


def read_line(host: str, port: int, timeout: float) -> str:
    """The first line a server sends on connecting (its banner or greeting)."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.settimeout(timeout)
        data = b""
        while b"\n" not in data and len(data) < 1024:
            chunk = conn.recv(1024)
            if not chunk:
                break
            data += chunk
    return data.split(b"\n", 1)[0].decode("ascii", "replace").strip()


def greeting_verdict(
    host: str, timeout: float, greetings: tuple[tuple[str, int, str], ...] = GREETINGS
) -> str | None:
    """Why SMTP (a 220 banner) or IMAP (a `* OK` greeting) does not answer (None: both do)."""
    for what, port, expected in greetings:
        try:
            line = read_line(host, port, timeout)
        except OSError as e:
            return f"{what} on {host}:{port} did not answer: {e}"
        if not line.startswith(expected):
            return f"{what} on {host}:{port} answered {line[:80]!r}, not {expected!r}"
    return None


@dataclass(frozen=True)
class LiveProbe:
    """The real gate: the pod (from the API) and the daemons (over TCP)."""

    kube: Kube
    cluster_domain: str
    timeout: float = 5.0

    def check(self, namespace: str, server: str, image: str) -> Health:
        pods = self.kube.read_list(Pod, namespace, labels=naming.pod_selector(server))
        why = pod_verdict(pods, image)
        if why is None:
            host = service_host(server, namespace, self.cluster_domain)
            why = greeting_verdict(host, self.timeout)
        return Health(ok=why is None, detail=why or "")
