"""Startup, readiness and liveness probes: tcpSocket, httpGet (on 127.0.0.1, the pod's
address) and exec (``podman exec``), with the kubelet's thresholds.

One difference, to keep tests quick: a readiness probe that has not succeeded yet is
tried every second (or its ``periodSeconds`` if shorter), not only every period.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
from dataclasses import dataclass

from vpes_devcluster.kube import Obj
from vpes_devcluster.podlet_env import POD_IP
from vpes_devcluster.podlet_podman import Podman

log = logging.getLogger("vpes_devcluster.podlet")

EAGER_PERIOD = 1.0


def resolve_port(container: Obj, port: object) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for item in container.get("ports") or []:
        if item.get("name") == text:
            return int(item["containerPort"])
    return None


def _tcp(container: Obj, spec: Obj, timeout: float) -> bool:
    port = resolve_port(container, spec.get("port"))
    if port is None:
        return False
    try:
        with socket.create_connection((spec.get("host") or POD_IP, port), timeout=timeout):
            return True
    except OSError:
        return False


def _http(container: Obj, spec: Obj, timeout: float) -> bool:
    port = resolve_port(container, spec.get("port"))
    if port is None:
        return False
    host = str(spec.get("host") or POD_IP)
    conn: http.client.HTTPConnection
    if str(spec.get("scheme") or "HTTP").upper() == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the kubelet does not verify either
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/podlet")
    try:
        conn.request("GET", str(spec.get("path") or "/"), headers=headers)
        return 200 <= conn.getresponse().status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


@dataclass
class Probe:
    """One probe of one running container."""

    kind: str  # startup, readiness, liveness
    spec: Obj
    started: float  # monotonic time the container started
    ok: bool = False
    failed: bool = False  # failureThreshold reached
    successes: int = 0
    failures: int = 0
    next_at: float = 0.0

    def __post_init__(self) -> None:
        self.ok = self.kind == "liveness"
        self.next_at = self.started + float(self.spec.get("initialDelaySeconds") or 0)

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    def tick(self, container: Obj, podman: Podman, cid: str) -> None:
        """Run the probe if it is due and update :attr:`ok` / :attr:`failed`."""
        now = time.monotonic()
        if now < self.next_at:
            return
        passed = self._check(container, podman, cid)
        if passed:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= int(self.spec.get("successThreshold") or 1):
                self.ok, self.failed = True, False
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= int(self.spec.get("failureThreshold") or 3):
                self.ok, self.failed = False, True
        eager = self.kind != "liveness" and not self.ok
        self.next_at = time.monotonic() + (min(self.period, EAGER_PERIOD) if eager else self.period)

    def _check(self, container: Obj, podman: Podman, cid: str) -> bool:
        timeout = float(self.spec.get("timeoutSeconds") or 1)
        if "tcpSocket" in self.spec:
            return _tcp(container, self.spec["tcpSocket"], timeout)
        if "httpGet" in self.spec:
            return _http(container, self.spec["httpGet"], timeout)
        if "exec" in self.spec:
            command = [str(c) for c in self.spec["exec"].get("command") or []]
            return podman.exec(cid, command, timeout + 5) == 0
        log.warning("%s probe of %s: unsupported handler; counted as passing", self.kind, cid)
        return True


def probes_of(container: Obj, started: float) -> dict[str, Probe]:
    out = {}
    for kind in ("startup", "readiness", "liveness"):
        spec = container.get(f"{kind}Probe")
        if spec:
            out[kind] = Probe(kind, spec, started)
    return out
