"""A loopback HTTP server that records what the calendar proxy sends it and answers
in chunks, and the fleet the proxy tests route by."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from vpes_operator.settings import OperatorSettings
from vpes_panel.wellknown.hosted import HostedDomains

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
    return HostedDomains(lambda: SERVERS, 30.0, list_plans=lambda: PLANS)


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
            for chunk in recorder.chunks:
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
