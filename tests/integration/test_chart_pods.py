"""The chart's own pods: a NetworkPolicy each that admits only the ports they serve,
and images that can be pinned by digest."""

from __future__ import annotations

from typing import Any

import pytest
from vpes_operator import naming
from vpes_operator.builders.network import EDGE_ROLE_LABEL
from vpes_operator.settings import OperatorSettings

from .chart_support import CHART, helm, render

DIGEST = "sha256:" + "0123456789abcdef" * 4
POLICIES = "templates/networkpolicies.yaml"
# component: (template, Deployment name)
DEPLOYMENTS = {
    "operator": ("templates/operator-deployment.yaml", "r-operator"),
    "billing": ("templates/billing-deployment.yaml", "r-billing"),
    "edge-mx": ("templates/edge-mx.yaml", "r-edge-mx"),
    "edge-proxy": ("templates/edge-proxy.yaml", "r-edge-proxy"),
    "edge-relay": ("templates/edge-relay.yaml", "r-edge-relay"),
    "antispam": ("templates/edge-antispam.yaml", "r-antispam"),
    "antispam-redis": ("templates/edge-antispam.yaml", "r-antispam-redis"),
}


def deployment(cluster: Any, component: str, *args: str) -> dict[str, Any]:
    template, name = DEPLOYMENTS[component]
    return next(
        o
        for o in render(cluster, template, *args)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == name
    )


def probe_port(probe: dict[str, Any]) -> int | str:
    return (probe.get("httpGet") or probe.get("tcpSocket") or {})["port"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("component", sorted(DEPLOYMENTS))
def test_each_pod_admits_only_the_ports_it_serves(cluster: Any, component: str) -> None:
    policies = {o["metadata"]["name"]: o for o in render(cluster, POLICIES)}
    policy = policies[DEPLOYMENTS[component][1]]["spec"]
    pod = deployment(cluster, component)["spec"]["template"]
    wanted = policy["podSelector"]["matchLabels"]
    assert wanted.items() <= pod["metadata"]["labels"].items(), "the policy misses its pods"
    # The relay's egress is confined too (tests/integration/test_chart_relay.py).
    assert policy["policyTypes"] == (
        ["Ingress", "Egress"] if component == "edge-relay" else ["Ingress"]
    )
    served = {p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    admitted = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert admitted == served, "admits more, or less, than served"
    # Probes reach a port the policy admits.
    for container in pod["spec"]["containers"]:
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in container:
                continue
            port = probe_port(container[probe])
            named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            assert named.get(port, port) in served, (probe, port)
    # No other component's pods are selected by this policy.
    for other in set(DEPLOYMENTS) - {component}:
        labels = deployment(cluster, other)["spec"]["template"]["metadata"]["labels"]
        assert not wanted.items() <= labels.items(), f"{component}'s policy selects {other}"


def test_the_edge_reaches_tenants_and_only_the_mx_reaches_the_antispam(cluster: Any) -> None:
    """Tenants admit pods labelled as the operator's edge_pod_labels: the MX carries
    them, Rspamd and Redis do not (a compromised Rspamd cannot reach a tenant); Rspamd
    admits the MX, the relay on its milter port only, and tenants on the controller's;
    Redis only Rspamd and the relay."""
    edge = dict(OperatorSettings().edge_pod_labels)
    labels = {
        c: deployment(cluster, c)["spec"]["template"]["metadata"]["labels"] for c in DEPLOYMENTS
    }
    assert edge.items() <= labels["edge-mx"].items()
    assert edge.items() <= labels["edge-proxy"].items()
    assert edge.items() <= labels["edge-relay"].items()  # the tenants' egress reaches it
    # Which of them the tenants' mail ports admit, and which their egress reaches, is
    # by role: the chart's role labels must be the operator's.
    settings = OperatorSettings()
    role = EDGE_ROLE_LABEL
    assert {labels["edge-mx"][role], labels["edge-proxy"][role]} == set(settings.edge_ingress_roles)
    assert labels["edge-relay"][role] == settings.edge_relay_role
    for other in ("antispam", "antispam-redis", "operator", "billing"):
        assert not edge.items() <= labels[other].items(), other
    policies = {o["metadata"]["name"]: o["spec"] for o in render(cluster, POLICIES)}
    # The scrape rule is tested in test_chart_edge_metrics.py.
    milter, outbound, training, scanner, _scrape = policies["r-antispam"]["ingress"]
    # The scanner (11333): only the operator, whose antispam FleetUpgrades scan through it.
    (scanning,) = scanner["from"]
    assert scanning["podSelector"]["matchLabels"].items() <= labels["operator"].items()
    assert "namespaceSelector" not in scanning  # its own namespace only
    assert scanner["ports"] == [{"protocol": "TCP", "port": 11333}]
    (peer,) = milter["from"]
    assert peer["podSelector"]["matchLabels"].items() <= labels["edge-mx"].items()
    # The relay judges outbound mail through the milter: 11332, nothing else.
    (relay_peer,) = outbound["from"]
    assert relay_peer["podSelector"]["matchLabels"].items() <= labels["edge-relay"].items()
    assert not relay_peer["podSelector"]["matchLabels"].items() <= labels["edge-mx"].items()
    assert outbound["ports"] == [{"protocol": "TCP", "port": 11332}]
    # Spam training: tenant pods (in any namespace) reach the controller's port and
    # no other; the operator points their egress at Rspamd's pods alone.
    (tenants,) = training["from"]
    assert tenants == {
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": naming.TENANT_APP}},
    }
    assert naming.selector_labels("x").items() >= tenants["podSelector"]["matchLabels"].items()
    assert training["ports"] == [{"protocol": "TCP", "port": 11334}]
    rspamd_pods = dict(OperatorSettings().antispam_pod_labels)
    assert rspamd_pods.items() <= labels["antispam"].items()
    for other in set(DEPLOYMENTS) - {"antispam"}:
        assert not rspamd_pods.items() <= labels[other].items(), other
    off = render(cluster, POLICIES, "--set", "edge.antispam.training.enabled=false")
    only_mx, relay_milter, operator_scans, _ = next(
        o["spec"] for o in off if o["metadata"]["name"] == "r-antispam"
    )["ingress"]
    assert (only_mx, relay_milter, operator_scans) == (milter, outbound, scanner)
    # Redis: Rspamd (Bayes) and the relay (its counts), never the MX.
    (bayes,) = policies["r-antispam-redis"]["ingress"]
    rspamd, relay = (p["podSelector"]["matchLabels"] for p in bayes["from"])
    assert rspamd.items() <= labels["antispam"].items()
    assert relay.items() <= labels["edge-relay"].items()
    for peer in (rspamd, relay):
        assert not peer.items() <= labels["edge-mx"].items()
    assert not rspamd.items() <= labels["edge-relay"].items()


def test_policies_can_be_turned_off(cluster: Any) -> None:
    assert render(cluster, POLICIES, "--set", "networkPolicy.enabled=false") == []


@pytest.mark.parametrize(
    ("component", "values", "repository"),
    [
        ("operator", "operator", "localhost/vpes-operator"),
        ("billing", "billing", "localhost/vpes-operator"),
        ("edge-mx", "edge.mx", "localhost/vpes-edge"),
        ("edge-proxy", "edge.mx", "localhost/vpes-edge"),
        ("edge-relay", "edge.mx", "localhost/vpes-edge"),
        ("antispam", "edge.antispam", "localhost/vpes-rspamd"),
        ("antispam-redis", "edge.antispam", "localhost/vpes-rspamd"),
    ],
)
def test_images_pinned_by_digest(
    cluster: Any, component: str, values: str, repository: str
) -> None:
    tagged = deployment(cluster, component)["spec"]["template"]["spec"]["containers"][0]
    assert tagged["image"] == f"{repository}:0.1.0"
    pinned = deployment(cluster, component, "--set", f"{values}.image.digest={DIGEST}")
    image = pinned["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{repository}@{DIGEST}"


def test_a_malformed_digest_fails_at_install_naming_the_value(cluster: Any) -> None:
    out = helm(
        cluster,
        "template",
        "r",
        str(CHART),
        "--set",
        "operator.image.digest=sha256:abc",
        check=False,
    )
    assert out.returncode != 0 and "/operator/image/digest" in out.stderr


def test_plain_edge_ports_admit_cluster_pods_only_and_are_never_published(cluster: Any) -> None:
    """The ports without a PROXY header (the MX's 2525, the proxy's +20000 twins) are
    on ClusterIP Services and admitted from the cluster's pods only: from outside, a
    client could claim any address there."""
    policies = {o["metadata"]["name"]: o["spec"] for o in render(cluster, POLICIES)}
    for name, plain in (("r-edge-mx", {2525}), ("r-edge-proxy", {20143, 20110, 24190, 20587})):
        public, internal, _scrape = policies[name]["ingress"]
        assert "from" not in public and not plain & {p["port"] for p in public["ports"]}
        assert internal["from"] == [{"namespaceSelector": {}}]
        assert {p["port"] for p in internal["ports"]} == plain
    for template, name in (
        ("templates/edge-mx.yaml", "r-edge-mx"),
        ("templates/edge-proxy.yaml", "r-edge-proxy"),
    ):
        services = {
            o["metadata"]["name"]: o for o in render(cluster, template) if o["kind"] == "Service"
        }
        assert services[name]["spec"]["type"] == "LoadBalancer"
        assert services[f"{name}-internal"]["spec"]["type"] == "ClusterIP"
        public_targets = {p["targetPort"] for p in services[name]["spec"]["ports"]}
        assert not any(str(t).endswith("plain") or t == "smtp" for t in public_targets), (
            public_targets
        )
    mx = deployment(cluster, "edge-mx")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in mx["env"]}
    assert env["VPES_MESSAGE_SIZE_LIMIT"] == "52428800"  # an integer, not 5.24288e+07


def test_the_operator_gets_the_training_settings_and_the_controller_password(
    cluster: Any,
) -> None:
    """Training on: the controller's URL and the spool limit in the settings ConfigMap,
    the password only as a mounted Secret file; off (or no antispam): none of it."""
    config = "templates/operator-config.yaml"
    (data,) = (o["data"] for o in render(cluster, config))
    assert data["VPES_ANTISPAM_CONTROLLER_URL"] == "http://r-antispam.ns1.svc.cluster.local:11334"
    assert data["VPES_ANTISPAM_LEARN_SPOOL_LIMIT"] == "32Mi"
    path = data["VPES_ANTISPAM_CONTROLLER_PASSWORD_FILE"]
    pod = deployment(cluster, "operator")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "antispam")
    volume = next(v for v in pod["volumes"] if v["name"] == "antispam")["secret"]
    assert path == f"{mount['mountPath']}/controller-password" and mount["readOnly"]
    assert volume["secretName"] == "r-antispam"
    assert volume["items"] == [{"key": "controller-password", "path": "controller-password"}]
    for off in ("edge.antispam.training.enabled=false", "edge.antispam.enabled=false"):
        extra = ("--set", off, "--set", "edge.relay.enabled=false")
        (data,) = (o["data"] for o in render(cluster, config, *extra))
        # The Deployment an antispam FleetUpgrade moves stays named while antispam runs.
        left = [k for k in data if k.startswith("VPES_ANTISPAM")]
        assert left == (["VPES_ANTISPAM_DEPLOYMENT"] if "training" in off else []), off
        pod = deployment(cluster, "operator", *extra)["spec"]["template"]["spec"]
        assert "antispam" not in {v["name"] for v in pod["volumes"]}, off
