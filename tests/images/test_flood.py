"""One client opening and holding many connections cannot take a port from others.

The tenant's Postfix has a handful of processes per service; before the limits
were made coherent, one client could hold 20 connections idle and so all of a
port's processes, and every other client waited without a greeting.
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from vpes_operator.render.tenant import POSTFIX_PROCESS_LIMIT, SMTPD_CLIENT_CONNECTIONS

from .clients import proxy_v1
from .conftest import Running

pytestmark = pytest.mark.images


def greeting(sock: socket.socket, timeout: float) -> bytes:
    """The first line the server sends, or b"" if none comes within `timeout`."""
    sock.settimeout(timeout)
    out = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while b"\n" not in out:
            chunk = sock.recv(512)
            if not chunk:
                break
            out += chunk
    return out


def connect_as(host: str, port: int, client: str, n: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(proxy_v1(client, "192.0.2.10", 50000 + n, port))
    return sock


@pytest.mark.parametrize("port", [10025, 10587])
def test_a_client_holding_connections_leaves_the_port_to_others(tenant: Running, port: int) -> None:
    flood = 3 * POSTFIX_PROCESS_LIMIT
    held: list[socket.socket] = []
    try:
        held = [connect_as(tenant.host, port, "203.0.113.66", i) for i in range(flood)]
        replies = [greeting(s, timeout=3) for s in held]
        served = [r for r in replies if r.startswith(b"220")]
        refused = [r for r in replies if r.startswith(b"421")]
        assert len(served) <= SMTPD_CLIENT_CONNECTIONS, replies
        assert refused and b"too many connections" in refused[0], replies
        # The flooder keeps its connections open and idle; another client is greeted.
        start = time.monotonic()
        with contextlib.closing(connect_as(tenant.host, port, "203.0.113.67", 999)) as other:
            assert greeting(other, timeout=10).startswith(b"220")
        assert time.monotonic() - start < 5
    finally:
        for s in held:
            s.close()
