"""The chart's monitoring: ServiceMonitors and alerts rendered only when enabled,
selecting the metrics Services, alerting on series the operator exports."""

from __future__ import annotations

import re
from typing import Any

from .chart_support import render

MONITORING = [
    "--set",
    "monitoring.serviceMonitor.enabled=true",
    "--set",
    "monitoring.prometheusRule.enabled=true",
    "--set",
    "monitoring.serviceMonitor.labels.release=prometheus",
]
# Series the alerts use that the backup work exports (not yet in the registry).
BACKUP_SERIES = {"vpes_backup_interval_seconds"}


def exported_series() -> set[str]:
    from vpes_operator import metrics

    names = set()
    for family in metrics.REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        names |= {family.name + s for s in suffixes.get(family.type, [""])}
    return names


def test_monitoring_is_rendered_only_when_enabled(cluster: Any) -> None:
    assert render(cluster, "templates/monitoring.yaml") == []
    kinds = [o["kind"] for o in render(cluster, "templates/monitoring.yaml", *MONITORING)]
    # The operator's, billing's and the edge's four (test_chart_edge_metrics.py).
    assert sorted(kinds) == ["PrometheusRule"] + ["ServiceMonitor"] * 6
    no_billing = render(
        cluster, "templates/monitoring.yaml", *MONITORING, "--set", "billing.enabled=false"
    )
    assert "r-billing" not in [
        o["metadata"]["name"] for o in no_billing if o["kind"] == "ServiceMonitor"
    ]
    assert "r-operator" in [o["metadata"]["name"] for o in no_billing]


def test_service_monitors_select_the_metrics_services(cluster: Any) -> None:
    objs = render(cluster, "templates/monitoring.yaml", *MONITORING)
    monitors = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceMonitor"}
    services = {
        o["metadata"]["name"]: o
        for t in ("templates/operator-service.yaml", "templates/billing-deployment.yaml")
        for o in render(cluster, t)
        if o["kind"] == "Service"
    }
    for monitor, service, port in [
        ("r-operator", "r-operator-metrics", "metrics"),
        ("r-billing", "r-billing", "http"),
    ]:
        sm = monitors[monitor]["spec"]
        svc = services[service]
        assert monitors[monitor]["metadata"]["labels"]["release"] == "prometheus"
        assert sm["namespaceSelector"] == {"matchNames": ["ns1"]}
        wanted = sm["selector"]["matchLabels"]
        assert wanted.items() <= svc["metadata"]["labels"].items(), (monitor, wanted)
        # Only that Service: the selector names its component.
        for name, other in services.items():
            if name != service:
                assert not wanted.items() <= other["metadata"]["labels"].items(), name
        (endpoint,) = sm["endpoints"]
        assert (
            endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
            and endpoint["port"] == port
        )
        assert endpoint["path"] == "/metrics" and endpoint["interval"] == "30s"
    # Tenant series carry the tenant's namespace label: it must survive the scrape.
    assert monitors["r-operator"]["spec"]["endpoints"][0]["honorLabels"] is True


def test_alerts_name_each_problem_and_use_real_series(cluster: Any) -> None:
    (rule,) = [
        o
        for o in render(cluster, "templates/monitoring.yaml", *MONITORING)
        if o["kind"] == "PrometheusRule"
    ]
    group, _edge = rule["spec"]["groups"]  # the edge's: test_chart_edge_metrics.py
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "VpesTenantNotReady",
        "VpesBackupTooOld",
        "VpesDNSVerificationFailing",
        "VpesOperatorErrors",
        "VpesOperatorNotProcessing",
        "VpesDNSRecordsLeftBehind",
        "VpesOperatorStalled",
        "VpesTenantStorage",
        "VpesCertificateExpiring",
        "VpesCertificateNotReady",
        "VpesEdgeCertificateExpiring",
    }
    not_ready = alerts["VpesTenantNotReady"]
    assert not_ready["for"] == "15m"
    # Per server, not an aggregate: the alert's labels say which one.
    assert "max by (namespace, server) (vpes_tenant_ready) == 0" in not_ready["expr"]
    assert "vpes_tenant_suspended" in not_ready["expr"], "a suspended server is not an alert"
    assert "$labels.server" in not_ready["annotations"]["summary"]
    too_old = " ".join(alerts["VpesBackupTooOld"]["expr"].split())
    assert too_old == (
        "max by (namespace, server) (vpes_backup_age_seconds) > 2 * "
        "max by (namespace, server) (vpes_backup_interval_seconds)"
    )
    storage = alerts["VpesTenantStorage"]
    assert storage["expr"] == "max by (namespace, server) (vpes_tenant_storage_healthy) == 0"
    assert "StorageHealthy" in storage["annotations"]["description"]
    assert "vpes_tenant_dns_verified" in alerts["VpesDNSVerificationFailing"]["expr"]
    expiring = " ".join(alerts["VpesCertificateExpiring"]["expr"].split())
    assert expiring == (
        "min by (namespace, server) (vpes_certificate_expiry_timestamp_seconds) - time() "
        "< 14 * 86400"
    )
    edge_expiring = " ".join(alerts["VpesEdgeCertificateExpiring"]["expr"].split())
    assert edge_expiring == (
        "min by (secret) (vpes_edge_certificate_expiry_timestamp_seconds) - time() < 14 * 86400"
    )
    not_ready_cert = alerts["VpesCertificateNotReady"]
    assert not_ready_cert["for"] == "1h"
    assert (
        "max by (namespace, server) (vpes_tenant_certificate_ready) == 0"
        in (not_ready_cert["expr"])
    )
    assert 'vpes_reconciles_total{result="error"}' in alerts["VpesOperatorErrors"]["expr"]
    # A start-up that never completes, or a wedged operator, pages someone.
    assert "absent(vpes_operator_ready)" in alerts["VpesOperatorNotProcessing"]["expr"]
    assert "vpes_operator_stalled" in alerts["VpesOperatorStalled"]["expr"]
    assert alerts["VpesOperatorStalled"]["labels"]["severity"] == "critical"
    for alert in alerts.values():
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}
        assert alert["annotations"]["summary"]
    # Every series an alert reads is one the operator exports (or the backup work will).
    used = {m for a in alerts.values() for m in re.findall(r"\bvpes_[a-z_]+", a["expr"])}
    unknown = used - exported_series() - BACKUP_SERIES
    assert unknown == set(), f"alerts on series nobody exports: {sorted(unknown)}"
