"""Run the shared edge image under podman the way its Deployment would.

``EdgeMaps`` writes the operator's maps directory the way the kubelet writes a
ConfigMap volume (files linked into ``..data``, swapped in one rename).
``Edge`` runs ``vpes-edge ROLE`` with a read-only root, tmpfs for every place
it writes, the maps mounted read-only, and its ports published on one
127.0.0.x address.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .tenant import _atomic_write, podman

MAPS_DIR = "/etc/vpes/maps"
TLS_DIR = "/etc/vpes/tls"
MAPS_WORK_DIR = "/var/lib/vpes/maps"
RUN_DIR = "/run/vpes"
QUEUE_DIR = "/var/spool/postfix"
MAPS_VERSION_FILE = f"{RUN_DIR}/maps-version"
MASTER_PID_FILE = f"{QUEUE_DIR}/pid/master.pid"
# What the edge needs of root (no chroot, no mail store): Postfix's master
# binds 25 and creates the queue's directories for its users; its daemons
# drop to the postfix user.
CAPABILITIES = (
    "CHOWN",
    "DAC_READ_SEARCH",
    "FOWNER",
    "KILL",
    "NET_BIND_SERVICE",
    "SETGID",
    "SETUID",
)
MX_PORTS = (25, 2525)
MAP_FILES = ("domains", "recipients", "transport", "access", "antispam", "proxy", "version")


def map_text(entries: Mapping[str, str]) -> str:
    """Postfix table syntax: ``key value`` per line."""
    return "".join(f"{key} {value}\n" for key, value in entries.items())


@dataclass
class EdgeMaps:
    """The operator's edge maps, on disk as the kubelet mounts a ConfigMap."""

    directory: Path

    def write(self, files: Mapping[str, str]) -> None:
        """Swap in a new version: file name → content (every key of the ConfigMap)."""
        _atomic_write(self.directory, dict(files))


@dataclass
class Edge:
    """One edge container running ``role``, its ports published on ``host``."""

    image: str
    host: str
    maps: EdgeMaps
    role: str = "mx"
    env: Mapping[str, str] = field(default_factory=dict)
    # A directory with tls.crt and tls.key (a Secret), mounted at TLS_DIR.
    tls_dir: Path | None = None
    name: str = field(default_factory=lambda: f"vpes-test-edge-{uuid.uuid4().hex[:8]}")

    def run_args(self) -> list[str]:
        args = [
            "run",
            "--detach",
            "--name",
            self.name,
            "--hostname",
            "edge",
            "--read-only",
            "--cap-drop=ALL",
            *(f"--cap-add={c}" for c in CAPABILITIES),
            "--security-opt=no-new-privileges",
            "--tmpfs",
            f"{RUN_DIR}:rw,mode=0755,size=16m",
            "--tmpfs",
            f"{QUEUE_DIR}:rw,mode=0755,size=64m",
            "--tmpfs",
            f"{MAPS_WORK_DIR}:rw,mode=0755,size=16m",
            "--volume",
            f"{self.maps.directory}:{MAPS_DIR}:ro",
            *(["--volume", f"{self.tls_dir}:{TLS_DIR}:ro"] if self.tls_dir else []),
            *(arg for k, v in self.env.items() for arg in ("--env", f"{k}={v}")),
        ]
        for port in MX_PORTS:
            args += ["--publish", f"{self.host}:{port}:{port}"]
        return [*args, self.image, self.role]

    def start(self) -> None:
        podman(*self.run_args())

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the plain port greets (postscreen on 25 waits for a PROXY header)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"edge exited:\n{self.logs()}")
            if _greets(self.host, 2525):
                return
            time.sleep(0.2)
        raise TimeoutError(f"edge not ready after {timeout} s:\n{self.logs()}")

    def running(self) -> bool:
        out = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return out.stdout.strip() == "true"

    def logs(self) -> str:
        out = podman("logs", self.name, check=False)
        return out.stdout + out.stderr

    def read(self, path: str) -> str:
        """A file's content inside the container ("" when it cannot be read)."""
        out = podman("exec", self.name, "cat", path, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    def wait_exit(self, timeout: float = 30) -> int:
        out = podman("wait", self.name, timeout=timeout)
        return int(out.stdout.strip())

    def remove(self) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False)


def _greets(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.settimeout(2)
            return s.recv(64).startswith(b"220")
    except OSError:
        return False
