"""Run the shared edge image under podman the way its Deployment would.

``EdgeMaps`` writes the operator's maps directory the way the kubelet writes a
ConfigMap volume (files linked into ``..data``, swapped in one rename).
``Edge`` runs ``vpes-edge ROLE`` with a read-only root, an emptyDir for every place
it writes, the maps mounted read-only, and its ports published on one
127.0.0.x address; ``ProxyEdge`` is the login proxy's role.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from .tenant import Container, _atomic_write, confined_run_args, container_address, podman

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
PROXY_MASTER_PID_FILE = f"{RUN_DIR}/dovecot/master.pid"
# What Dovecot's master needs of root: bind the ports below 1024, run the login
# processes as dovenull chrooted into their own empty directory (CHOWN makes
# it theirs), the auth process as dovecot, and signal them all.
PROXY_CAPABILITIES = ("CHOWN", "KILL", "NET_BIND_SERVICE", "SETGID", "SETUID", "SYS_CHROOT")
# The proxy's standard ports expect a PROXY header; the plain twins (+20000) do not.
PROXY_PORTS = (143, 993, 110, 995, 4190, 587, 465)
PLAIN_PORTS = (20143, 20110, 24190, 20587)
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
class Edge(Container):
    """One edge container running ``role``, its ports published on ``host``.

    With ``publish=False`` nothing is published and ``start`` sets ``host`` to
    the container's own address on the podman network (as ``Tenant`` does).
    """

    image: str
    host: str
    maps: EdgeMaps
    role: str = "mx"
    env: Mapping[str, str] = field(default_factory=dict)
    # A directory with tls.crt and tls.key (a Secret), mounted at TLS_DIR.
    tls_dir: Path | None = None
    name: str = field(default_factory=lambda: f"vpes-test-edge-{uuid.uuid4().hex[:8]}")
    # A fixed address on the podman network, and names for /etc/hosts (name, address).
    ip: str = ""
    hosts: tuple[tuple[str, str], ...] = ()
    publish: bool = True

    # What the role needs: its capabilities, the places it writes (emptyDirs),
    # its ports, and the plain port whose greeting says it is ready.
    capabilities: ClassVar[tuple[str, ...]] = CAPABILITIES
    writable: ClassVar[tuple[str, ...]] = (RUN_DIR, QUEUE_DIR, MAPS_WORK_DIR)
    ports: ClassVar[tuple[int, ...]] = MX_PORTS
    ready_port: ClassVar[int] = 2525
    greeting: ClassVar[bytes] = b"220"
    pid_file: ClassVar[str] = MASTER_PID_FILE

    def run_args(self) -> list[str]:
        args = [
            *confined_run_args(self.name, "edge", self.capabilities),
            *(["--ip", self.ip] if self.ip else []),
            *(arg for name, ip in self.hosts for arg in ("--add-host", f"{name}:{ip}")),
            *(arg for path in self.writable for arg in self.emptydir(path)),
            "--volume",
            f"{self.maps.directory}:{MAPS_DIR}:ro",
            *(["--volume", f"{self.tls_dir}:{TLS_DIR}:ro"] if self.tls_dir else []),
            *(arg for k, v in self.env.items() for arg in ("--env", f"{k}={v}")),
        ]
        if self.publish:
            for port in self.ports:
                args += ["--publish", f"{self.host}:{port}:{port}"]
        return [*args, self.image, self.role]

    def emptydir(self, path: str) -> list[str]:
        """The mount of a place the pod has an emptyDir (``--volume``)."""
        host = emptydir(self.maps.directory.parent / f"{self.name}{path.replace('/', '-')}", path)
        return ["--volume", f"{host}:{path}"]

    def start(self) -> None:
        podman(*self.run_args())
        if not self.publish:
            self.host = container_address(self.name)

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the plain port greets (the standard ports wait for a PROXY header)."""
        self.wait_serving(
            lambda: _greets(self.host, self.ready_port, self.greeting), "edge", timeout
        )

    def wait_version(self, version: str, timeout: float = 15) -> None:
        """Until vpes-edge says it has loaded maps ``version``."""
        deadline = time.monotonic() + timeout
        while self.read(MAPS_VERSION_FILE) != version:
            if time.monotonic() > deadline:
                raise TimeoutError(f"maps version {version} not loaded:\n{self.logs()}")
            time.sleep(0.2)

    def master_pid(self) -> str:
        """The master process's pid (Postfix's, or Dovecot's for the proxy)."""
        pid = self.read(self.pid_file)
        assert pid, "no master.pid"
        return pid

    def read(self, path: str) -> str:
        """A file's content inside the container ("" when it cannot be read)."""
        out = podman("exec", self.name, "cat", path, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    def stop(self) -> str:
        """SIGTERM (``podman stop``), an exit code of 0; its logs then."""
        podman("stop", "--time", "20", self.name)
        assert self.wait_exit() == 0
        return self.logs()

    def start_refused(self) -> str:
        """Start it, expect vpes-edge to refuse (exit code 2), remove it; its logs."""
        try:
            self.start()
            code = self.wait_exit()
            logs = self.logs()
        finally:
            self.remove()
        assert code == 2, f"exit code {code}:\n{logs}"
        return logs

    def remove(self) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False)


@dataclass
class ProxyEdge(Edge):
    """``vpes-edge proxy``: Dovecot as a login proxy, only /run/vpes writable."""

    role: str = "proxy"

    capabilities: ClassVar[tuple[str, ...]] = PROXY_CAPABILITIES
    writable: ClassVar[tuple[str, ...]] = (RUN_DIR,)
    ports: ClassVar[tuple[int, ...]] = (*PROXY_PORTS, *PLAIN_PORTS)
    ready_port: ClassVar[int] = 20143
    greeting: ClassVar[bytes] = b"* OK"
    pid_file: ClassVar[str] = PROXY_MASTER_PID_FILE


@dataclass
class EdgeUnderTest:
    """An edge a test module shares: the maps' version it runs, and a way back to
    its base maps (``base_maps``) after a test changed them."""

    edge: Edge
    version: str

    @property
    def host(self) -> str:
        return self.edge.host

    def base_maps(self, version: str) -> dict[str, str]:
        raise NotImplementedError

    def write_maps(self, files: Mapping[str, str]) -> None:
        self.edge.maps.write(files)

    def restore(self) -> None:
        """Back to the base maps (a new version of them)."""
        self.version = f"base-{uuid.uuid4().hex[:8]}"
        self.write_maps(self.base_maps(self.version))
        self.edge.wait_version(self.version)


def emptydir(host: Path, path: str) -> Path:
    """A host directory for a place the pod has an emptyDir, as the kubelet makes it:
    root's, mode 0777, and 1777 for /run/vpes (the charts' ``medium: Memory``), so
    that the image meets the permissions it gets in a pod (podman ignores a tmpfs's
    mode under /run; OpenDKIM refuses keys below a directory others may write)."""
    host.mkdir(parents=True, exist_ok=True)
    host.chmod(0o1777 if path == RUN_DIR else 0o777)
    return host


def _greets(host: str, port: int, greeting: bytes) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.settimeout(2)
            return s.recv(64).startswith(greeting)
    except OSError:
        return False
