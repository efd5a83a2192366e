"""A TCP proxy in front of the API server that can black-hole its open connections.

`stall()` freezes every connection open at that moment: they stay open but no
byte moves in either direction any more, as when a load balancer or NAT on
the way forgets a long-lived stream. Connections opened afterwards flow.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

import yaml


class _Conn:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.stalled = threading.Event()
        self.closed = threading.Event()

    def pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.2)
        try:
            while not self.closed.is_set():
                if self.stalled.is_set():
                    self.closed.wait(0.2)  # hold the connection open, move nothing
                    continue
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.closed.set()
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.close()


class StallingProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.conns: list[_Conn] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="proxy")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for c in self.conns:
                c.close()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            conn = _Conn(client, upstream)
            with self._lock:
                self.conns = [c for c in self.conns if not c.closed.is_set()] + [conn]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=conn.pump, args=(src, dst), daemon=True).start()

    def stall(self) -> int:
        """Black-hole every open connection; returns how many there were."""
        with self._lock:
            live = [c for c in self.conns if not c.closed.is_set()]
        for c in live:
            c.stalled.set()
        return len(live)

    def kubeconfig_through(self, kubeconfig: Path, out: Path) -> Path:
        """A copy of `kubeconfig` whose server is this proxy (same TLS name: 127.0.0.1)."""
        doc = yaml.safe_load(kubeconfig.read_text())
        for cluster in doc["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        out.write_text(yaml.safe_dump(doc))
        return out
