"""What the inbound MX's image tests share (tests/images/test_edge_mx*.py): the
edge MX (``vpes-edge mx``) on ``<net>.31``, routing the conftest tenant's
domains to that tenant's own address on the podman network
(``smtp:[<tenant ip>]:25``), as the operator routes a domain to the tenant's
Service; started once by the conftest's ``edge`` fixture.

Clients: port 25 behind a PROXY v1 header (the load balancer's), 2525 without.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pytest

from .clients import ProxySMTP, proxy_v1
from .conftest import Running, host_address
from .edge import Edge, EdgeMaps, EdgeUnderTest, map_text
from .tenant import container_address

HOSTNAME = "mx.edge.test"
SIZE_LIMIT = 2 * 1024 * 1024
INTERVAL = 2  # vpes-edge's default VPES_MAPS_INTERVAL
ALICE, BOB = "alice@example.org", "bob@example.net"
SUSPENDED = "suspended.example"
FRESH = "fresh.example"
# Port 25 clients, as the load balancer's PROXY header names them. postscreen
# holds each new address for its pregreet test (6 s) once, then remembers it.
CLIENT = "198.51.100.25"


def maps_for(tenant_ip: str, version: str) -> dict[str, str]:
    """The operator's maps: the conftest tenant's two domains, and a suspended
    server's domain routed nowhere reachable."""
    route = f"smtp:[{tenant_ip}]:25"
    return {
        "domains": map_text(
            {"example.org": "customer/tenant", "example.net": "customer/tenant", SUSPENDED: "s/s"}
        ),
        "recipients": map_text(
            {
                ALICE: "OK",
                BOB: "OK",
                "@example.net": "OK",  # the tenant's catch-all
                f"someone@{SUSPENDED}": "OK",
            }
        ),
        "transport": map_text(
            {"example.org": route, "example.net": route, SUSPENDED: "smtp:[192.0.2.1]:25"}
        ),
        "access": map_text(
            {SUSPENDED: f"450 4.7.1 {SUSPENDED}: this mail server is suspended, try again later"}
        ),
        "antispam": map_text({"example.org": "standard", "example.net": "off"}),
        "proxy": "",
        "version": f"{version}\n",
    }


@dataclass
class RunningEdge(EdgeUnderTest):
    """The tests' edge MX, routing the conftest tenant's domains to its address."""

    tenant_ip: str

    def base_maps(self, version: str) -> dict[str, str]:
        return maps_for(self.tenant_ip, version)


def start_edge(
    image: str,
    root: Path,
    host: str,
    files: dict[str, str],
    env: dict[str, str],
    tls_dir: Path | None = None,
) -> Edge:
    maps = EdgeMaps(root / "maps")
    maps.write(files)
    return Edge(image, host, maps, env={"VPES_HOSTNAME": HOSTNAME, **env}, tls_dir=tls_dir)


def start_mx(
    edge_image: str, tenant: Running, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningEdge]:
    """The conftest's ``edge`` fixture: the edge MX in front of the conftest tenant."""
    tenant_ip = container_address(tenant.tenant.name)
    version = "base-0"
    box = start_edge(
        edge_image,
        tmp_path_factory.mktemp("edge"),
        host_address(31),
        maps_for(tenant_ip, version),
        {"VPES_MESSAGE_SIZE_LIMIT": str(SIZE_LIMIT)},
    )
    try:
        box.start()
        box.wait_ready()
        box.wait_version(version)
        yield RunningEdge(box, version, tenant_ip)
    finally:
        box.remove()


# --- clients ------------------------------------------------------------------------


def connect(host: str, port: int, client: str = CLIENT) -> smtplib.SMTP:
    """Port 25 behind a PROXY v1 header claiming ``client``; 2525 without one."""
    if port == 25:
        return ProxySMTP(host, 25, proxy_v1(client, "192.0.2.25", 40025, 25), timeout=20)
    return smtplib.SMTP(host, port, timeout=20)


def rcpt(host: str, port: int, address: str, client: str = CLIENT) -> tuple[int, bytes]:
    with connect(host, port, client) as smtp:
        smtp.ehlo("client.example")
        code, text = smtp.mail("carol@example.org")
        assert code == 250, text
        return smtp.docmd(f"RCPT TO:<{address}>")


def send(host: str, port: int, rcpts: list[str], data: bytes) -> None:
    with connect(host, port) as smtp:
        smtp.ehlo("client.example")
        assert smtp.sendmail("carol@example.org", rcpts, data) == {}


def read_reply(lines: BinaryIO) -> bytes:
    """One SMTP reply, its lines joined (the last has a space after the code)."""
    out = b""
    while True:
        line = lines.readline()
        if not line:
            raise ConnectionError(f"closed after {out!r}")
        out += line
        if line[3:4] != b"-":
            return out
