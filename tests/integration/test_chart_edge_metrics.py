"""The edge's metrics in the chart: a ServiceMonitor per edge component selecting
its internal Service (never a LoadBalancer), the metrics ports admitted only from
``monitoring.scrapeFrom``, and alerts on series the edge really exports."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart_support import render
from .operator_support import REPO

sys.path.insert(0, str(REPO / "images" / "edge" / "metrics"))

import vpes_edge_log as edge_log
import vpes_edge_metrics as exporter

POLICIES = "templates/networkpolicies.yaml"
MONITORING = [
    "--set",
    "monitoring.serviceMonitor.enabled=true",
    "--set",
    "monitoring.prometheusRule.enabled=true",
]
TEMPLATES = (
    "templates/edge-mx.yaml",
    "templates/edge-proxy.yaml",
    "templates/edge-relay.yaml",
    "templates/edge-antispam.yaml",
    "templates/operator-service.yaml",
    "templates/billing-deployment.yaml",
)
# ServiceMonitor: (Service, its endpoints' ports, the NetworkPolicy, the port numbers).
EDGE = {
    "r-edge-mx": ("r-edge-mx-internal", ["metrics"], "r-edge-mx", {9147}),
    "r-edge-proxy": ("r-edge-proxy-internal", ["metrics"], "r-edge-proxy", {9147}),
    "r-edge-relay": ("r-edge-relay", ["metrics", "status"], "r-edge-relay", {9147, 9146}),
    "r-antispam": ("r-antispam", ["controller"], "r-antispam", {11334}),
}
METRICS_PORTS = {9146, 9147, 11334}
# How a login through the proxy ends (images/edge/proxy/dovecot.conf).
RESULTS = ("ok", "auth_failed", "no_route", "tenant_error")
DEFAULT_SCRAPERS = [
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
]


def services(cluster: Any, *args: str) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o
        for t in TEMPLATES
        for o in render(cluster, t, *args)
        if o["kind"] == "Service"
    }


def monitors(cluster: Any, *args: str) -> dict[str, dict[str, Any]]:
    objs = render(cluster, "templates/monitoring.yaml", *MONITORING, *args)
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceMonitor"}


def test_each_edge_monitor_selects_only_its_internal_service(cluster: Any) -> None:
    found = monitors(cluster)
    all_services = services(cluster)
    for name, (service, ports, _, _) in EDGE.items():
        spec = found[name]["spec"]
        wanted = spec["selector"]["matchLabels"]
        selected = [
            s for s, o in all_services.items() if wanted.items() <= o["metadata"]["labels"].items()
        ]
        assert selected == [service], (name, selected)
        svc = all_services[service]
        assert svc["spec"]["type"] == "ClusterIP"
        assert [e["port"] for e in spec["endpoints"]] == ports
        named = {p["name"] for p in svc["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert endpoint["port"] in named and endpoint["path"] == "/metrics"
            assert endpoint["interval"] == "30s"
        assert spec["namespaceSelector"] == {"matchNames": ["ns1"]}


def test_metrics_ports_are_never_on_a_public_service(cluster: Any) -> None:
    found = services(cluster)
    public = [o for o in found.values() if o["spec"]["type"] != "ClusterIP"]
    assert {o["metadata"]["name"] for o in public} == {"r-edge-mx", "r-edge-proxy"}
    for svc in public:
        for port in svc["spec"]["ports"]:
            assert port["port"] not in METRICS_PORTS, (svc["metadata"]["name"], port)
            assert port["targetPort"] not in {"metrics", "status", "controller", *METRICS_PORTS}
    # Even a provider who makes the internal Services LoadBalancers cannot: they are fixed.
    for name in ("r-edge-mx-internal", "r-edge-proxy-internal", "r-edge-relay"):
        assert found[name]["spec"]["type"] == "ClusterIP"
        assert {"metrics"} <= {p["name"] for p in found[name]["spec"]["ports"]}


def scrape_rules(policy: dict[str, Any], ports: set[int]) -> list[dict[str, Any]]:
    return [r for r in policy["ingress"] if ports & {p["port"] for p in r["ports"]}]


@pytest.mark.parametrize(
    "scrapers",
    [
        None,  # the default: the namespace "monitoring"
        [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ],
    ],
)
def test_metrics_ports_admit_only_the_scrapers(
    cluster: Any, tmp_path: Path, scrapers: list[dict[str, Any]] | None
) -> None:
    args: list[str] = []
    if scrapers is not None:
        values = tmp_path / "scrapers.yaml"
        values.write_text(yaml.safe_dump({"monitoring": {"scrapeFrom": scrapers}}))
        args = ["-f", str(values)]
    policies = {o["metadata"]["name"]: o["spec"] for o in render(cluster, POLICIES, *args)}
    expected = scrapers if scrapers is not None else DEFAULT_SCRAPERS
    for name in ("r-edge-mx", "r-edge-proxy", "r-edge-relay"):
        (rule,) = scrape_rules(policies[name], {9147})
        assert rule["from"] == expected, name
        assert [p["port"] for p in rule["ports"]] == [9147]
    # Rspamd's controller: the MX (the milter's statistics), the training tenants
    # (test_chart_pods.py) and the scrapers.
    mx_rule, _training, scrape = scrape_rules(policies["r-antispam"], {11334})
    assert mx_rule["from"][0]["podSelector"]["matchLabels"]["vpes.io/edge-role"] == "mx"
    assert scrape["from"] == expected and [p["port"] for p in scrape["ports"]] == [11334]
    # No rule admits a metrics port from everywhere.
    for name, policy in policies.items():
        for rule in policy.get("ingress", []):
            ports = {p["port"] for p in rule["ports"]}
            if name != "r-operator" and ports & METRICS_PORTS:
                assert rule.get("from"), (name, rule)


def test_no_scrapers_no_scrape_rule(cluster: Any, tmp_path: Path) -> None:
    values = tmp_path / "none.yaml"
    values.write_text("monitoring:\n  scrapeFrom: []\n")
    policies = {
        o["metadata"]["name"]: o["spec"] for o in render(cluster, POLICIES, "-f", str(values))
    }
    for name in ("r-edge-mx", "r-edge-proxy"):
        assert scrape_rules(policies[name], {9147}) == []
    only_mx, training = scrape_rules(policies["r-antispam"], {11334})
    assert only_mx["from"][0]["podSelector"]["matchLabels"]["vpes.io/edge-role"] == "mx"
    assert "podSelector" in training["from"][0]  # the tenants, not a scraper


def test_a_disabled_component_has_no_monitor(cluster: Any) -> None:
    found = monitors(
        cluster, "--set", "edge.proxy.enabled=false", "--set", "edge.relay.enabled=false"
    )
    assert {"r-edge-mx", "r-antispam"} <= set(found)
    assert not {"r-edge-proxy", "r-edge-relay"} & set(found)


def proxy_metric_names() -> set[str]:
    """The login counters the proxy's Dovecot defines (images/edge/proxy/dovecot.conf)."""
    conf = (REPO / "images" / "edge" / "proxy" / "dovecot.conf").read_text()
    return set(re.findall(r"^metric (vpes_proxy_logins_\w+) \{", conf, re.MULTILINE))


def test_the_proxy_login_counters_become_one_series_with_a_result(cluster: Any) -> None:
    (endpoint,) = monitors(cluster)["r-edge-proxy"]["spec"]["endpoints"]
    label, rename = endpoint["metricRelabelings"]
    assert label["targetLabel"] == "result" and rename["targetLabel"] == "__name__"
    assert rename["replacement"] == "vpes_edge_proxy_logins_total"
    pattern = re.compile(label["regex"])
    names = proxy_metric_names()
    assert names == {
        f"vpes_proxy_logins_{r}" for r in ("ok", "auth_failed", "no_route", "tenant_error")
    }
    for name in names:  # Dovecot exports each as dovecot_<name>_total
        match = pattern.fullmatch(f"dovecot_{name}_total")
        assert match is not None and f"vpes_proxy_logins_{match[1]}" == name


def edge_series(spool: Path) -> set[str]:
    """What the MX's and relay's exporter serves, and the proxy's renamed counter."""
    from prometheus_client import CollectorRegistry

    for queue in exporter.QUEUES:
        (spool / queue).mkdir(parents=True)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter.EdgeCollector("mx", exporter.Counts(), spool))
    names = {"vpes_edge_proxy_logins_total", "up"}
    for family in registry.collect():
        names |= {s.name for s in family.samples}
    return names


def test_edge_alerts_use_real_series_and_say_what_to_do(cluster: Any, tmp_path: Path) -> None:
    objs = render(
        cluster,
        "templates/monitoring.yaml",
        *MONITORING,
        "--set",
        "monitoring.prometheusRule.deferredQueueThreshold=250",
    )
    (rule,) = [o for o in objs if o["kind"] == "PrometheusRule"]
    _operator, group = rule["spec"]["groups"]
    assert group["name"] == "vpes-edge"
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "VpesEdgeMetricsDown",
        "VpesEdgeMailDeferred",
        "VpesEdgeAntispamUnavailable",
        "VpesEdgeRelayLoginsFailing",
        "VpesEdgeProxyTenantErrors",
    }
    deferred = alerts["VpesEdgeMailDeferred"]
    assert deferred["for"] == "15m"
    assert 'queue="deferred"' in deferred["expr"] and deferred["expr"].endswith("> 250")
    scraped = re.search(r'service=~"([^"]+)"', alerts["VpesEdgeMetricsDown"]["expr"])
    assert scraped is not None
    for service, *_ in EDGE.values():
        assert re.fullmatch(scraped[1], service), service
    assert 'reason="milter_tempfail"' in alerts["VpesEdgeAntispamUnavailable"]["expr"]
    assert 'reason="auth_failed"' in alerts["VpesEdgeRelayLoginsFailing"]["expr"]
    known = edge_series(tmp_path / "spool")
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in {"warning", "critical"}
        summary, description = alert["annotations"]["summary"], alert["annotations"]["description"]
        assert summary and "kubectl" in description, name  # what to look at next
        used = set(re.findall(r"\b([a-z_]+)\{", alert["expr"]))
        assert used <= known, (name, used - known)
        for label in re.findall(r'(reason|queue|result)="(\w+)"', alert["expr"]):
            values = {
                "reason": edge_log.REASONS,
                "queue": exporter.QUEUES,
                "result": RESULTS,
            }[label[0]]
            assert label[1] in values, (name, label)
