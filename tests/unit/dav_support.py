"""A loopback HTTP server that records what the calendar proxy sends it and answers
in chunks, and the fleet the proxy tests route by."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from vpes_operator.settings import OperatorSettings
from vpes_panel.wellknown.hosted import HostedDomains

from .hosted_support import indexed

MAIL = OperatorSettings(edge_web_host="web.edge.example", cluster_domain="cluster.test")
SERVERS: list[dict[str, Any]] = [
    {
        "metadata": {
            "name": "mail",
            "namespace": "ann",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"domains": ["one.example"], "plan": "big"},
    },
    {
        "metadata": {
            "name": "post",
            "namespace": "bob",
            "creationTimestamp": "2026-01-02T00:00:00Z",
        },
        "spec": {"domains": ["two.example"], "plan": "small"},
    },
    {
        "metadata": {
            "name": "gone",
            "namespace": "cat",
            "creationTimestamp": "2026-01-03T00:00:00Z",
        },
        "spec": {"domains": ["three.example"], "plan": "deleted-plan"},
    },
]
PLANS: list[dict[str, Any]] = [
    {"metadata": {"name": "big"}, "spec": {"features": {"calendar": True}}},
    {"metadata": {"name": "small"}, "spec": {"features": {"calendar": False}}},
]


def hosted() -> HostedDomains:
    return indexed(SERVERS, PLANS)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    """What the backend received; what it answers (status, headers, body chunks)."""

    received: list[Received] = field(default_factory=list)
    status: int = 207
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    port: int = 0
    # Set: the answer waits for it after its first chunk (released: it came in time).
    gate: threading.Event | None = None
    released: bool | None = None


def _handler(recorder: Recorder) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            recorder.received.append(Received(self.command, self.path, headers, body))
            self.send_response(recorder.status)
            for k, v in recorder.headers:
                self.send_header(k, v)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, chunk in enumerate(recorder.chunks):
                if i == 1 and recorder.gate is not None:
                    recorder.released = recorder.gate.wait(5)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

    for method in ("GET", "PUT", "PROPFIND", "REPORT", "DELETE", "MOVE"):
        setattr(Handler, f"do_{method}", Handler._any)
    return Handler


@contextmanager
def recording_backend() -> Iterator[Recorder]:
    recorder = Recorder()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_backend() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@contextmanager
def served(app: ASGIApp) -> Iterator[int]:
    """`app` under uvicorn on a loopback port (yielded), its lifespan run."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        port = int(sock.getsockname()[1])
        wait_for_port(port)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
