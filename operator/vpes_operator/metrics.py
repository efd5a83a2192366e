"""Prometheus metrics of the operator, and the HTTP endpoint that serves them.

Counters and histograms are updated by the handlers; the per-tenant gauges are
computed at scrape time from what the operator already watches, so a scrape
costs no API call.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from .conditions import find, is_true
from .models.conditions import Condition, ConditionType, Reason
from .models.server import PersonalMailServer, Phase, Usage

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

BACKUP_INTERVAL = Gauge(
    "vpes_backup_interval_seconds",
    "The period of each server's backup schedule (its plan's), to compare the backup age with.",
    ["namespace", "server"],
    registry=REGISTRY,
)
BACKUP_RESULTS = Counter(
    "vpes_backup_jobs_total",
    "Backups and restores that ended, by kind (backup, restore) and result (Completed, "
    "or the failure's reason).",
    ["kind", "result"],
    registry=REGISTRY,
)

# The outbound relay (outbound.py): who is held, how much each server sent.
OUTBOUND_HELD = Gauge(
    "vpes_tenant_outbound_held",
    "1 while the server's outbound mail is held, else 0; cause: limit (its hourly "
    "recipients), spam (the relay's antispam refused too many messages) or none.",
    ["namespace", "server", "cause"],
    registry=REGISTRY,
)
OUTBOUND_SPAM = Gauge(
    "vpes_tenant_outbound_spam",
    "Messages of the server the relay's antispam refused in the last hour (the relay's count).",
    ["namespace", "server"],
    registry=REGISTRY,
)
OUTBOUND_RECIPIENTS = Gauge(
    "vpes_tenant_outbound_recipients",
    "Recipients the server sent through the relay in the last hour (the relay's count).",
    ["namespace", "server"],
    registry=REGISTRY,
)
RELAY_STATUS_UP = Gauge(
    "vpes_relay_status_up",
    "1 when the relay's /status answered at the last poll, 0 when it did not.",
    registry=REGISTRY,
)

# The operator's own progress (health.py sets them; the alerts read them).
WAITING = Gauge(
    "vpes_servers_waiting",
    "Servers whose current generation no handler has taken since the operator started.",
    registry=REGISTRY,
)
OLDEST_WAIT = Gauge(
    "vpes_servers_oldest_wait_seconds",
    "How long the longest-waiting server has waited for a handler (0 when none waits).",
    registry=REGISTRY,
)
STALLED = Gauge(
    "vpes_operator_stalled",
    "1 when work has waited longer than the stall limit while no handler finished.",
    registry=REGISTRY,
)
READY = Gauge(
    "vpes_operator_ready",
    "1 when the operator watches, has indexed every server and processes them.",
    registry=REGISTRY,
)

DNS_RECORDS_LEFT = Counter(
    "vpes_dns_records_left_total",
    "Records of deleted servers left in DNS after removing them kept failing "
    "(each is named in the log and in an event).",
    registry=REGISTRY,
)
DRIFT_CORRECTIONS = Counter(
    "vpes_drift_corrections_total",
    "Servers reconciled again because a child was deleted or edited by hand.",
    registry=REGISTRY,
)
HANDLERS_IN_FLIGHT = Gauge(
    "vpes_server_handlers_in_flight",
    "Server handlers running now (bounded by the operator's thread pool).",
    registry=REGISTRY,
)
HANDLERS_IN_FLIGHT_PEAK = Gauge(
    "vpes_server_handlers_in_flight_peak",
    "The most server handlers that ran at once since the operator started.",
    registry=REGISTRY,
)

# The shared edge's maps (edgemaps.py sets them).
EDGE_MAPS_LAST_SUCCESS = Gauge(
    "vpes_edge_maps_last_success_timestamp_seconds",
    "When the edge's maps were last built and found or made current in their ConfigMap "
    "(Unix time; 0 before the first time).",
    registry=REGISTRY,
)
EDGE_MAPS_DOMAINS = Gauge(
    "vpes_edge_maps_domains",
    "Domains the edge's maps route (as last built).",
    registry=REGISTRY,
)

CERTIFICATE_EXPIRY = Gauge(  # set by certreport.py
    "vpes_certificate_expiry_timestamp_seconds",
    "When the first of the server's web-name certificates (cert-manager or ACME) expires.",
    ["namespace", "server"],
    registry=REGISTRY,
)

EDGE_CERTIFICATE_EXPIRY = Gauge(  # set by acmecerts.py and edgecert.py
    "vpes_edge_certificate_expiry_timestamp_seconds",
    "When the certificate of the edge's mail names (cert-manager's or the operator's "
    "ACME client's) expires.",
    ["secret"],
    registry=REGISTRY,
)

# What the gauges are computed from: (namespace, name) → a server's summary.
Summaries = Callable[[], Iterable["ServerSummary"]]


class TenantCollector(Collector):
    """The per-server gauges, computed from the servers' latest summaries.

    vpes_tenants{phase,plan} counts servers; vpes_tenant_ready,
    vpes_tenant_suspended, vpes_tenant_dns_verified, vpes_tenant_domains_routed and
    vpes_tenant_certificate_ready{namespace,server} are 1 or 0 per server (so that an
    alert names the server, and holds while it stays so);
    vpes_backup_age_seconds{namespace,server} is the age of its last backup;
    vpes_tenant_storage_*{namespace,server} its mail volume (StorageGauges).
    """

    def __init__(self, summaries: Summaries) -> None:
        self.summaries = summaries

    def collect(self) -> Iterator[Metric]:
        tenants = GaugeMetricFamily(
            "vpes_tenants", "Servers by phase and plan.", labels=["phase", "plan"]
        )
        who = ["namespace", "server"]
        ready = GaugeMetricFamily(
            "vpes_tenant_ready", "1 when the server's Ready condition is True.", labels=who
        )
        suspended = GaugeMetricFamily(
            "vpes_tenant_suspended", "1 when the server is suspended on purpose.", labels=who
        )
        dns_verified = GaugeMetricFamily(
            "vpes_tenant_dns_verified",
            "1 when the server's DNSVerified condition is True, 0 when False "
            "(absent before its first check).",
            labels=who,
        )
        domains_routed = GaugeMetricFamily(
            "vpes_tenant_domains_routed",
            "1 when the edge routes every domain of the server to it (DomainsRouted), 0 "
            "when another server has one of them (absent before the maps were built).",
            labels=who,
        )
        certificate_ready = GaugeMetricFamily(
            "vpes_tenant_certificate_ready",
            "1 when the server's CertificateReady is True, 0 when False (absent while "
            "Unknown, and where certificates are not configured).",
            labels=who,
        )
        backup_age = GaugeMetricFamily(
            "vpes_backup_age_seconds",
            "Time since each server's last good backup.",
            labels=who,
        )
        storage = StorageGauges(who)
        counts: dict[tuple[str, str], int] = {}
        now = dt.datetime.now(dt.UTC)
        for s in self.summaries():
            storage.add(s)
            key = (s.phase or Phase.PENDING.value, s.plan or "")
            counts[key] = counts.get(key, 0) + 1
            labels = [s.namespace, s.name]
            ready.add_metric(labels, 1.0 if s.ready else 0.0)
            suspended.add_metric(labels, 1.0 if s.suspended else 0.0)
            if s.dns_verified is not None:
                dns_verified.add_metric(labels, 1.0 if s.dns_verified else 0.0)
            if s.domains_routed is not None:
                domains_routed.add_metric(labels, 1.0 if s.domains_routed else 0.0)
            if s.certificate_ready is not None:
                certificate_ready.add_metric(labels, 1.0 if s.certificate_ready else 0.0)
            if s.last_backup is not None:
                backup_age.add_metric(labels, (now - s.last_backup).total_seconds())
        for (phase, plan), n in sorted(counts.items()):
            tenants.add_metric([phase, plan], n)
        yield from (
            tenants,
            ready,
            suspended,
            dns_verified,
            domains_routed,
            certificate_ready,
            backup_age,
            *storage.families(),
        )

    def describe(self) -> Iterator[Metric]:
        return iter(())


class StorageGauges:
    """Each server's mail volume as last measured, and its StorageHealthy condition."""

    def __init__(self, who: list[str]) -> None:
        self.used = GaugeMetricFamily(
            "vpes_tenant_storage_used_bytes",
            "Bytes used on the server's mail volume (mail, indexes, queue), last measured.",
            labels=who,
        )
        self.capacity = GaugeMetricFamily(
            "vpes_tenant_storage_capacity_bytes",
            "Size of the server's mail volume, last measured.",
            labels=who,
        )
        self.committed = GaugeMetricFamily(
            "vpes_tenant_quota_committed_bytes",
            "The server's mailbox quotas added up (above the capacity: overcommitted).",
            labels=who,
        )
        self.healthy = GaugeMetricFamily(
            "vpes_tenant_storage_healthy",
            "1 when StorageHealthy is True, 0 when the volume is (nearly) full or the "
            "quotas overcommit it (absent until measured).",
            labels=who,
        )

    def add(self, s: ServerSummary) -> None:
        labels = [s.namespace, s.name]
        if s.storage_used is not None and s.storage_capacity:
            self.used.add_metric(labels, float(s.storage_used))
            self.capacity.add_metric(labels, float(s.storage_capacity))
        if s.quota_committed is not None:
            self.committed.add_metric(labels, float(s.quota_committed))
        if s.storage_healthy is not None:
            self.healthy.add_metric(labels, 1.0 if s.storage_healthy else 0.0)

    def families(self) -> tuple[Metric, ...]:
        return (self.used, self.capacity, self.committed, self.healthy)


@dataclass(frozen=True)
class ServerSummary:
    """What the gauges need of one PersonalMailServer."""

    namespace: str
    name: str
    phase: str | None
    plan: str | None
    ready: bool
    suspended: bool
    dns_verified: bool | None  # None: not checked yet
    last_backup: dt.datetime | None
    storage_used: int | None = None
    storage_capacity: int | None = None
    quota_committed: int | None = None
    storage_healthy: bool | None = None  # None: not measured (UsageUnknown) or no condition
    domains_routed: bool | None = None  # None: the edge's maps have not been built yet
    certificate_ready: bool | None = None  # None: Unknown, not configured, or not set yet


def summary(server: PersonalMailServer) -> ServerSummary:
    status = server.status
    verified = find(status.conditions, ConditionType.DNS_VERIFIED)
    stored = find(status.conditions, ConditionType.STORAGE_HEALTHY)
    routed = find(status.conditions, ConditionType.DOMAINS_ROUTED)
    cert = find(status.conditions, ConditionType.CERTIFICATE_READY)
    usage = status.usage or Usage()
    return ServerSummary(
        namespace=server.metadata.namespace,
        name=server.metadata.name,
        phase=status.phase,
        plan=server.spec.get("plan"),
        ready=is_true(status.conditions, ConditionType.READY),
        suspended=server.suspended or status.phase == Phase.SUSPENDED,
        dns_verified=None if verified is None else verified.status == "True",
        last_backup=status.last_backup.completed_at if status.last_backup else None,
        storage_used=usage.storage_used_bytes,
        storage_capacity=usage.storage_capacity_bytes,
        quota_committed=usage.quota_committed_bytes,
        storage_healthy=(
            None
            if stored is None or stored.reason == Reason.USAGE_UNKNOWN
            else stored.status == "True"
        ),
        domains_routed=None if routed is None else routed.status == "True",
        certificate_ready=_certificate_ready(cert),
    )


def _certificate_ready(cert: Condition | None) -> bool | None:
    """None: Unknown (issuing), or certificates not configured (nothing to alert on)."""
    if cert is None or cert.status == "Unknown":
        return None
    return None if cert.reason == Reason.CERTIFICATES_NOT_CONFIGURED else cert.status == "True"


class Server:
    """/metrics, /readyz and /healthz on one port.

    It starts before anything else and runs until the process ends, so /healthz
    (liveness) answers on a standby replica too, which waits for the Lease
    before kopf (and kopf's own liveness endpoint) starts.
    """

    def __init__(
        self,
        port: int,
        ready: Callable[[], bool],
        host: str = "0.0.0.0",  # noqa: S104
        healthy: Callable[[], bool] = lambda: True,
        explain: Callable[[], str] = lambda: "",
    ) -> None:
        registry = REGISTRY

        def probe(ok: bool, bad: bytes) -> tuple[bytes, str, int]:
            why = explain()
            body = (b"ok\n" if ok else bad) + (why.encode() + b"\n" if why else b"")
            return body, "text/plain", (200 if ok else 503)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/readyz"):
                    body, ctype, code = probe(ready(), b"not ready\n")
                elif self.path.startswith("/healthz"):
                    body, ctype, code = probe(healthy(), b"unhealthy\n")
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
        self._by_key: dict[tuple[str, str], ServerSummary] = {}

    def update(self, server: PersonalMailServer, deleted: bool) -> None:
        key = (server.metadata.namespace, server.metadata.name)
        with self._lock:
            if deleted:
                self._by_key.pop(key, None)
            else:
                self._by_key[key] = summary(server)

    def __call__(self) -> list[ServerSummary]:
        with self._lock:
            return list(self._by_key.values())


SERVERS = ServerSummaries()
REGISTRY.register(TenantCollector(SERVERS))
