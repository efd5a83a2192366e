"""Prometheus metrics of the operator, and the HTTP endpoint that serves them.

Counters and histograms are updated by the handlers; the per-tenant gauges are
computed at scrape time from what the operator already watches, so a scrape
costs no API call.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "vpes_reconciles_total",
    "Reconciles by kind and result (ok, waiting, invalid, error).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "vpes_reconcile_duration_seconds",
    "Time one reconcile takes.",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
DNS_VERIFICATION_FAILURES = Counter(
    "vpes_dns_verification_failures_total",
    "DNS records found wrong or missing by live verification.",
    ["namespace", "server"],
    registry=REGISTRY,
)

# What the gauges are computed from: (namespace, name) → a server's summary.
Summaries = Callable[[], Iterable[dict[str, Any]]]


class TenantCollector(Collector):
    """vpes_tenants{phase,plan} and vpes_backup_age_seconds{namespace,server}."""

    def __init__(self, summaries: Summaries) -> None:
        self.summaries = summaries

    def collect(self) -> Iterator[Metric]:
        tenants = GaugeMetricFamily(
            "vpes_tenants", "Servers by phase and plan.", labels=["phase", "plan"]
        )
        backup_age = GaugeMetricFamily(
            "vpes_backup_age_seconds",
            "Time since each server's last good backup.",
            labels=["namespace", "server"],
        )
        counts: dict[tuple[str, str], int] = {}
        now = dt.datetime.now(dt.UTC)
        for s in self.summaries():
            key = (s.get("phase") or "Pending", s.get("plan") or "")
            counts[key] = counts.get(key, 0) + 1
            done = s.get("last_backup")
            if done:
                when = dt.datetime.fromisoformat(str(done).replace("Z", "+00:00"))
                backup_age.add_metric([s["namespace"], s["name"]], (now - when).total_seconds())
        for (phase, plan), n in sorted(counts.items()):
            tenants.add_metric([phase, plan], n)
        yield tenants
        yield backup_age

    def describe(self) -> Iterator[Metric]:
        return iter(())


def summary(body: dict[str, Any]) -> dict[str, Any]:
    """What the gauges need of one PersonalMailServer."""
    status = body.get("status") or {}
    return {
        "namespace": body["metadata"]["namespace"],
        "name": body["metadata"]["name"],
        "phase": status.get("phase"),
        "plan": (body.get("spec") or {}).get("plan"),
        "last_backup": (status.get("lastBackup") or {}).get("completedAt"),
    }


class Server:
    """/metrics and /readyz on one port (kopf serves liveness on its own)."""

    def __init__(self, port: int, ready: Callable[[], bool], host: str = "0.0.0.0") -> None:  # noqa: S104
        registry = REGISTRY

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/readyz"):
                    ok = ready()
                    body, ctype, code = (
                        (b"ok\n" if ok else b"not ready\n"),
                        "text/plain",
                        (200 if ok else 503),
                    )
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes are not worth a log line each

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="metrics")

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()


class ServerSummaries:
    """The latest summary of every server, kept from the watch stream (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, str], dict[str, Any]] = {}

    def update(self, body: dict[str, Any], deleted: bool) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        with self._lock:
            if deleted:
                self._by_key.pop(key, None)
            else:
                self._by_key[key] = summary(body)

    def __call__(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._by_key.values())


SERVERS = ServerSummaries()
REGISTRY.register(TenantCollector(SERVERS))
