"""The outbound relay's policy service and HTTP endpoint (``vpes-edge relay``).

- A Postfix policy service (``check_policy_service`` at RCPT) on
  ``VPES_POLICY_LISTEN`` (127.0.0.1:10046): per RCPT of an authenticated
  server, held → 450 with the reason, unknown → 454, over the limit in the
  sliding window (Redis, shared by the replicas) → 450, Redis unreachable →
  451; else DUNNO (the rest of Postfix's rules decide).
- HTTP on ``VPES_RELAY_HTTP`` (0.0.0.0:9146): ``GET /status`` (JSON) and
  ``GET /metrics`` (Prometheus text).

It reads the maps vpes-edge generated (``current`` under
``VPES_RELAY_GEN``: limits, held, version) again whenever the link moves.
Decisions and documents are the pure functions of ``vpes_relay``.
"""

from __future__ import annotations

import json
import os
import socketserver
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis
import vpes_relay as policy

CURRENT = Path(os.environ.get("VPES_RELAY_GEN", "/run/vpes/relay")) / "current"
QUEUE_FILE = Path(os.environ.get("VPES_RELAY_GEN", "/run/vpes/relay")) / "queue-messages"


def log(line: str) -> None:
    print(f"vpes-relay: {line}", file=sys.stderr, flush=True)


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class State:
    """The loaded maps, the Redis client, the per-replica counters."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self.window = self.redis.register_script(policy.WINDOW_SCRIPT)
        self.lock = threading.Lock()
        self.loaded_from = ""
        self.maps = policy.Maps()
        self.totals = dict.fromkeys(policy.RESULTS, 0)
        self.instance = uuid.uuid4().hex[:12]
        self.sequence = 0

    def current(self) -> policy.Maps:
        try:
            target = os.readlink(CURRENT)
        except OSError:
            return self.maps
        with self.lock:
            if target != self.loaded_from:
                files = {}
                for name in ("limits", "held", "version"):
                    path = CURRENT / name
                    files[name] = path.read_text() if path.exists() else ""
                try:
                    self.maps = policy.parse_maps(files)
                except policy.MapError as e:  # vpes-edge checked them: not expected
                    log(f"error: maps in {target} not loaded: {e}")
                self.loaded_from = target
                log(f"policy maps version {self.maps.version} loaded")
            return self.maps

    def decide(self, server: str) -> policy.Decision:
        maps = self.current()
        before = policy.before_count(maps, server)
        if isinstance(before, policy.Decision):
            return self.counted(before)
        with self.lock:
            self.sequence += 1
            member = f"{time.time():.6f}:{self.instance}:{self.sequence}"
        try:
            allowed, _ = self.window(
                keys=list(policy.keys(server)),
                args=[time.time(), policy.WINDOW_SECONDS, before.recipients, before.token, member],
            )
        except redis.RedisError as e:
            log(f"error: Redis: {e}: deferring {server}")
            return self.counted(policy.REDIS_DOWN)
        return self.counted(policy.after_count(server, before, bool(allowed)))

    def counted(self, decision: policy.Decision) -> policy.Decision:
        with self.lock:
            self.totals[decision.result] += 1
        return decision

    def usage(self) -> dict[str, policy.Usage]:
        maps = self.current()
        servers = sorted(maps.limits)
        since = time.time() - policy.WINDOW_SECONDS
        pipe = self.redis.pipeline(transaction=False)
        for server in servers:
            rcpt, deferred, _ = policy.keys(server)
            pipe.zcount(rcpt, since, "+inf")
            pipe.zcount(deferred, since, "+inf")
        counts = pipe.execute()
        return {
            s: policy.Usage(int(counts[2 * i]), int(counts[2 * i + 1]))
            for i, s in enumerate(servers)
        }


class PolicyHandler(socketserver.StreamRequestHandler):
    """One Postfix connection: requests until it hangs up."""

    state: State

    def handle(self) -> None:
        while True:
            lines: list[str] = []
            while True:
                raw = self.rfile.readline(4096)
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    break
                lines.append(line)
            request = policy.parse_request(lines)
            if request.get("request") != "smtpd_access_policy":
                self.wfile.write(policy.response("DUNNO"))
                continue
            server = request.get("sasl_username", "").strip().lower()
            decision = self.state.decide(server)
            if decision.result != "accepted":
                log(f"{server or '(no login)'}: {decision.action}")
            self.wfile.write(policy.response(decision.action))


class HttpHandler(BaseHTTPRequestHandler):
    state: State

    def do_GET(self) -> None:
        try:
            if self.path == "/status":
                body = json.dumps(policy.status(self.state.current(), self.state.usage()))
                self.reply(200, "application/json", body)
            elif self.path == "/metrics":
                self.reply(200, "text/plain; version=0.0.4", self.metrics())
            else:
                self.reply(404, "text/plain", "not found\n")
        except redis.RedisError as e:
            self.reply(503, "text/plain", f"Redis: {e}\n")

    def metrics(self) -> str:
        usage = self.state.usage()
        over = sum(1 for u in usage.values() if u.deferred > 0)
        try:
            queue: int | None = int(QUEUE_FILE.read_text())
        except (OSError, ValueError):
            queue = None
        with self.state.lock:
            totals = dict(self.state.totals)
        return policy.metrics(self.state.current(), totals, over, queue)

    def reply(self, code: int, kind: str, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class PolicyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> int:
    host, port = _address(os.environ.get("VPES_REDIS", ""))
    client = redis.Redis(
        host=host,
        port=port,
        password=os.environ.get("VPES_REDIS_PASSWORD") or None,
        socket_timeout=2,
        socket_connect_timeout=2,
    )
    state = State(client)
    state.current()
    PolicyHandler.state = state
    HttpHandler.state = state
    policy_server = PolicyServer(
        _address(os.environ.get("VPES_POLICY_LISTEN", "127.0.0.1:10046")), PolicyHandler
    )
    http = ThreadingHTTPServer(
        _address(os.environ.get("VPES_RELAY_HTTP", "0.0.0.0:9146")), HttpHandler
    )
    http.daemon_threads = True
    threading.Thread(target=policy_server.serve_forever, daemon=True).start()
    log(f"policy service on {policy_server.server_address}, HTTP on {http.server_address}")
    http.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
