"""The containers of the edge benchmark, run as the image tests run them
(tests/images/edge.py, tests/images/test_rspamd.py) but publishing no ports: the
load generator talks to each container's own address on the podman network, so
no port forward (DNAT rule) is made, and none can be left behind. ``dns`` is the
resolver they are given (``--dns``; see ``edge_dns``).
"""

from __future__ import annotations

import secrets
import smtplib
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from vpes_operator.settings import OperatorSettings

from bench.memory import Box, run_tenant
from tests.images.edge import Edge, EdgeMaps
from tests.images.tenant import (
    PASSWORDS,
    Tenant,
    TenantFiles,
    container_address,
    podman,
    sample_spec,
)

HOSTNAME = "mx.edge.bench"
MILTER, SCANNER, CONTROLLER, REDIS = 11332, 11333, 11334, 6379
SECURITY = ["--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges"]


def with_dns(args: list[str], dns: str, before: int) -> list[str]:
    """``args`` with ``--dns`` (when given) before the last ``before`` (image, command)."""
    extra = ["--dns", dns] if dns else []
    return [*args[:-before], *extra, *args[-before:]]


@dataclass
class QuietTenant(Tenant):
    dns: str = ""

    def run_args(self) -> list[str]:
        return with_dns(super().run_args(), self.dns, 1)


def start_tenant(image: str, root: Path, edge: str, dns: str = "") -> Box:
    """The image tests' sample server, ``edge`` its edge_networks, nothing published."""
    files = TenantFiles(root, OperatorSettings(edge_networks=(edge,)))
    files.write(sample_spec(), PASSWORDS)
    name = f"vpes-bench-tenant-{uuid.uuid4().hex[:8]}"
    return run_tenant(QuietTenant(image, "", files, name=name, publish=False, dns=dns))


@dataclass
class QuietEdge(Edge):
    """``Edge`` with nothing published (``host`` is the container's own address)
    and ``dns`` as its resolver."""

    publish: bool = False
    dns: str = ""

    def run_args(self) -> list[str]:
        return with_dns(super().run_args(), self.dns, 2)


def start_edge(
    image: str,
    root: Path,
    files: dict[str, str],
    milter: str = "",
    dns: str = "",
) -> QuietEdge:
    """An edge MX over ``files`` (written as the kubelet writes a ConfigMap into
    ``root``), with Rspamd as its milter when ``milter`` is an address."""
    maps = EdgeMaps(root)
    maps.write(files)
    env = {"VPES_HOSTNAME": HOSTNAME, "VPES_MESSAGE_SIZE_LIMIT": str(10 * 1024 * 1024)}
    if milter:
        env["VPES_MILTER"] = f"inet:{milter}:{MILTER}"
    name = f"vpes-bench-edge-{uuid.uuid4().hex[:8]}"
    edge = QuietEdge(image, "", maps, env=env, name=name, dns=dns)
    try:
        edge.start()
        edge.wait_ready(60)
        edge.wait_version(files["version"].strip(), 60)
    except BaseException:
        edge.remove()
        raise
    return edge


def empty_dir(root: Path, path: str) -> list[str]:
    """A host directory as the kubelet makes an emptyDir (root's, mode 0777)."""
    host = root / path.strip("/").replace("/", "-")
    host.mkdir(parents=True)
    host.chmod(0o777)
    return ["--volume", f"{host}:{path}"]


@dataclass
class Antispam:
    redis: str
    rspamd: str
    host: str  # Rspamd's address

    def remove(self) -> None:
        for name in (self.rspamd, self.redis):
            podman("rm", "--force", "--time", "5", name, check=False)


def start_antispam(image: str, root: Path, antispam_map: str, dns: str = "") -> Antispam:
    """Redis and Rspamd as the chart's two Deployments run them, the antispam map
    (the operator's) mounted like a ConfigMap."""
    tag = uuid.uuid4().hex[:8]
    box = Antispam(f"vpes-bench-redis-{tag}", f"vpes-bench-rspamd-{tag}", "")
    redis_password, controller_password = secrets.token_hex(16), secrets.token_hex(16)
    EdgeMaps(root / "maps").write({"antispam": antispam_map})
    try:
        podman(
            "run", "--detach", "--name", box.redis, *SECURITY,
            *empty_dir(root / "redis", "/run/vpes"),
            "--env", f"VPES_REDIS_PASSWORD={redis_password}",
            image, "redis",
        )  # fmt: skip
        podman(
            "run", "--detach", "--name", box.rspamd, *SECURITY,
            *empty_dir(root / "rspamd", "/run/vpes"), *empty_dir(root / "rspamd", "/tmp"),
            "--volume", f"{root / 'maps'}:/etc/vpes/maps:ro", *(["--dns", dns] if dns else []),
            "--env", f"VPES_REDIS={container_address(box.redis)}:{REDIS}",
            "--env", f"VPES_REDIS_PASSWORD={redis_password}",
            "--env", f"VPES_RSPAMD_CONTROLLER_PASSWORD={controller_password}",
            image, "rspamd",
        )  # fmt: skip
        box.host = container_address(box.rspamd)
        deadline = time.monotonic() + 120
        while not (_pong(box.host) and _listens(box.host, MILTER)):
            if time.monotonic() > deadline:
                logs = podman("logs", box.rspamd, check=False)
                raise TimeoutError(f"Rspamd not ready:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.5)
    except BaseException:
        box.remove()
        raise
    return box


def _pong(host: str) -> bool:
    try:
        return httpx.get(f"http://{host}:{SCANNER}/ping", timeout=2).text.strip() == "pong"
    except httpx.HTTPError:
        return False


def _listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def rcpt_code(host: str, address: str, port: int = 2525) -> int:
    """The edge's answer to RCPT TO ``address`` (one session on the plain port)."""
    with smtplib.SMTP(host, port, timeout=10) as smtp:
        smtp.ehlo("probe.example")
        smtp.mail("probe@sender.example")
        return smtp.rcpt(address)[0]
