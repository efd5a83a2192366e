"""The outbound relay's policy service and HTTP endpoint (``vpes-edge relay``).

- A Postfix policy service (``check_policy_service`` at RCPT) on
  ``VPES_POLICY_LISTEN`` (127.0.0.1:10046): per RCPT of an authenticated
  server, held → 450 with the reason, unknown → 454, over the limit in the
  sliding window (Redis, shared by the replicas) → 450, Redis unreachable →
  451; else DUNNO (the rest of Postfix's rules decide).
- On the same socket, ``request=vpes_spam_event`` with ``sasl_username``: one
  message of that server Rspamd's milter refused (5xx), sent by the log reader
  (``vpes_edge_metrics.py``); counted in its own sliding window in Redis
  (``SPAM_SCRIPT``), under the server's release token. ``/status`` says
  ``spam_hold`` once a server has ``VPES_SPAM_HOLD_THRESHOLD`` of them (0: never).
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
        self.spam_window = self.redis.register_script(policy.SPAM_SCRIPT)
        self.threshold = policy.spam_threshold(os.environ.get("VPES_SPAM_HOLD_THRESHOLD"))
        self.spam_total = 0
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

    def spam(self, server: str) -> str:
        """Counts one refused message of `server`; the policy's answer to the reader."""
        limit = self.current().limits.get(server)
        if limit is None:
            log(f"{server or '(no login)'}: a refused message not counted (not in the limits)")
            return "DUNNO"
        with self.lock:
            self.sequence += 1
            member = f"{time.time():.6f}:{self.instance}:{self.sequence}"
        try:
            count = self.spam_window(
                keys=list(policy.keys(server)),
                args=[time.time(), policy.WINDOW_SECONDS, limit.token, member],
            )
        except redis.RedisError as e:
            log(f"error: Redis: {e}: a refused message of {server} not counted")
            return "DEFER_IF_PERMIT"
        with self.lock:
            self.spam_total += 1
        hold = " (spam hold)" if policy.spam_hold(int(count), self.threshold) else ""
        log(f"{server}: message refused by the antispam, {count} in the last hour{hold}")
        return "OK"

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
            rcpt, deferred, token, spam = policy.keys(server)
            pipe.zcount(rcpt, since, "+inf")
            pipe.zcount(deferred, since, "+inf")
            pipe.zcount(spam, since, "+inf")
            pipe.get(token)
        counts = pipe.execute()
        usage = {}
        for i, server in enumerate(servers):
            rcpt_n, deferred_n, spam_n, token = counts[4 * i : 4 * i + 4]
            # Counted under another release token: the next RCPT forgets them.
            if (token or b"").decode() != maps.limits[server].token:
                rcpt_n = deferred_n = spam_n = 0
            usage[server] = policy.Usage(int(rcpt_n), int(deferred_n), int(spam_n))
        return usage


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
            server = request.get("sasl_username", "").strip().lower()
            if request.get("request") == policy.SPAM_REQUEST:
                self.wfile.write(policy.response(self.state.spam(server)))
                continue
            if request.get("request") != "smtpd_access_policy":
                self.wfile.write(policy.response("DUNNO"))
                continue
            decision = self.state.decide(server)
            if decision.result != "accepted":
                log(f"{server or '(no login)'}: {decision.action}")
            self.wfile.write(policy.response(decision.action))


class HttpHandler(BaseHTTPRequestHandler):
    state: State

    def do_GET(self) -> None:
        try:
            if self.path == "/status":
                state = self.state
                body = json.dumps(policy.status(state.current(), state.usage(), state.threshold))
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
        spam_held = sum(1 for u in usage.values() if policy.spam_hold(u.spam, self.state.threshold))
        try:
            queue: int | None = int(QUEUE_FILE.read_text())
        except (OSError, ValueError):
            queue = None
        with self.state.lock:
            totals = dict(self.state.totals)
            spam = (self.state.spam_total, spam_held)
        return policy.metrics(self.state.current(), totals, over, queue, spam)

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
