"""What the login proxy's image tests share (tests/images/test_edge_proxy*.py).

Two tenants of their own (the sample server on each, both trusting the edge's
address) and the edge on a fixed address of the podman network (``--ip``), the
tenants' Services as names in its /etc/hosts (``--add-host``), as the operator
routes a domain to ``<server>.<ns>.svc.cluster.local``. The conftest's
``proxy`` fixture starts them once for every test module of the proxy.

Clients: IMAP, POP3 and their TLS twins behind a PROXY header, as the load
balancer (the standard ports) or a pod (the plain +20000 ports) opens them.
"""

from __future__ import annotations

import contextlib
import imaplib
import ipaddress
import poplib
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .clients import TLS, ProxyIMAP4SSL, message, proxy_v1, wait_until
from .conftest import Running, host_address, start_tenant
from .edge import PROXY_PORTS, EdgeMaps, EdgeUnderTest, ProxyEdge
from .tenant import PASSWORDS, container_address, podman
from .test_delivery import send

HOSTNAME = "proxy.edge.test"
INTERVAL = 2  # VPES_MAPS_INTERVAL's default
ALICE, BOB = "alice@example.org", "bob@example.net"
A_HOST, B_HOST = "tenant-a.customer.svc.cluster.local", "tenant-b.customer.svc.cluster.local"
AUTH_FAILED = b"[AUTHENTICATIONFAILED] Authentication failed."


def proxy_map(routes: dict[str, str]) -> str:
    """The operator's line for each domain (``maps.build``'s ``proxy`` file)."""
    return "".join(f"{d}:::::::proxy=y host={h} nopassword=y\n" for d, h in sorted(routes.items()))


def maps_for(routes: dict[str, str], version: str) -> dict[str, str]:
    return {
        "domains": "",
        "recipients": "",
        "transport": "",
        "access": "",
        "antispam": "",
        "proxy": proxy_map(routes),
        "version": f"{version}\n",
    }


BASE = {"example.org": A_HOST, "example.net": B_HOST}


def free_address() -> str:
    """An address for the edge on the podman network, far from the ones podman hands out."""
    subnet = podman(
        "network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Subnet}}{{end}}"
    )
    network = ipaddress.ip_network(subnet.stdout.strip())
    hosts = network.num_addresses
    return str(network[random.randint(hosts // 2, hosts - 2)])


@dataclass
class ProxySetup(EdgeUnderTest):
    """The login proxy and tenants A and B (example.org to A, example.net to B)."""

    a: Running
    b: Running

    def base_maps(self, version: str) -> dict[str, str]:
        return maps_for(BASE, version)

    def route(self, routes: dict[str, str], version: str) -> None:
        self.write_maps(maps_for(routes, version))


def start_proxy(
    image: str, edge_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxySetup]:
    """The conftest's ``proxy`` fixture: two tenants and the proxy in front of them."""
    edge_ip = free_address()
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(
            contextlib.contextmanager(start_tenant)(
                image, host_address(42), tmp_path_factory.mktemp("a"), f"{edge_ip}/32"
            )
        )
        b = stack.enter_context(
            contextlib.contextmanager(start_tenant)(
                image, host_address(43), tmp_path_factory.mktemp("b"), f"{edge_ip}/32"
            )
        )
        # Every tenant takes XCLIENT from its edge on the plain submission port (the
        # operator renders it so), and from nobody else.
        for tenant in (a, b):
            xclient = podman(
                "exec", tenant.tenant.name, "postconf", "-h", "smtpd_client_event_limit_exceptions"
            ).stdout
            assert edge_ip in xclient, xclient
            master = podman("exec", tenant.tenant.name, "postconf", "-P").stdout
            assert "587/inet/smtpd_authorized_xclient_hosts = " in master, master
        maps = EdgeMaps(tmp_path_factory.mktemp("edge") / "maps")
        maps.write(maps_for(BASE, "base-0"))
        edge = ProxyEdge(
            edge_image,
            host_address(41),
            maps,
            env={"VPES_HOSTNAME": HOSTNAME},
            ip=edge_ip,
            hosts=(
                (A_HOST, container_address(a.tenant.name)),
                (B_HOST, container_address(b.tenant.name)),
            ),
        )
        stack.callback(edge.remove)
        edge.start()
        edge.wait_ready()
        edge.wait_version("base-0")
        yield ProxySetup(edge, "base-0", a, b)


# --- clients ------------------------------------------------------------------------


class ProxyIMAP4(imaplib.IMAP4):
    """IMAP behind a PROXY header (port 143: STARTTLS after it)."""

    def __init__(self, host: str, port: int, header: bytes) -> None:
        self._header = header
        super().__init__(host, port, timeout=15)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.sendall(self._header)
        return sock


class ProxyPOP3(poplib.POP3):
    """POP3 behind a PROXY header (none when ``header`` is empty)."""

    def __init__(self, host: str, port: int, header: bytes) -> None:
        self._header = header
        super().__init__(host, port, timeout=15)

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.sendall(self._header)
        return sock


class ProxyPOP3SSL(poplib.POP3_SSL):
    def __init__(self, host: str, port: int, header: bytes) -> None:
        self._header = header
        super().__init__(host, port, timeout=15, context=TLS)

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout)
        sock.sendall(self._header)
        return TLS.wrap_socket(sock, server_hostname=self.host)


def client_address() -> tuple[str, int]:
    return f"198.51.100.{random.randint(2, 254)}", random.randint(20000, 60000)


def imap(host: str, port: int) -> imaplib.IMAP4:
    """A TLS IMAP session with the proxy, as the load balancer or a pod would open it."""
    src, sport = client_address()
    header = proxy_v1(src, "192.0.2.143", sport, port)
    if port == 993:
        return ProxyIMAP4SSL(host, port, header)
    client = (
        ProxyIMAP4(host, port, header)
        if port in PROXY_PORTS
        else imaplib.IMAP4(host, port, timeout=15)
    )
    client.starttls(TLS)
    return client


def subjects(client: imaplib.IMAP4) -> bytes:
    typ, _ = client.select("INBOX", readonly=True)
    assert typ == "OK"
    _, found = client.search(None, "ALL")
    if not found[0]:
        return b""
    _, data = client.fetch(
        b",".join(found[0].split()).decode(), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
    )
    return b"".join(bytes(p[1]) for p in data if isinstance(p, tuple))


def login_error(host: str, port: int, user: str, password: str) -> bytes:
    with imap(host, port) as client:
        with pytest.raises(imaplib.IMAP4.error) as failed:
            client.login(user, password)
        return (
            failed.value.args[0]
            if isinstance(failed.value.args[0], bytes)
            else str(failed.value.args[0]).encode()
        )


def deliver(t: Running, to: str, subject: str) -> None:
    send(t.host, [to], message("carol@example.org", to, subject))
    wait_until(lambda: b"Subject: " + subject.encode() in _direct(t, to), what=f"{subject} at {to}")


def _direct(t: Running, user: str) -> bytes:
    client = imaplib.IMAP4_SSL(t.host, 993, ssl_context=TLS, timeout=10)
    try:
        client.login(user, PASSWORDS[user])
        return subjects(client)
    finally:
        client.logout()
