"""The chart's outbound relay: its Deployment (image, env, volumes), its ClusterIP
Service, its NetworkPolicy (587 from tenant pods only, 9146 from the operator and the
monitoring namespace, egress to DNS, the MX's plain port, Redis, Rspamd's milter and
the internet's 25), the outbound antispam's settings, the SRS Secret both the relay
and the MX mount, and the operator's settings that follow it."""

from __future__ import annotations

import base64
from typing import Any

from vpes_operator import naming

from .chart_support import CHART, helm, render

RELAY = "templates/edge-relay.yaml"
MX = "templates/edge-mx.yaml"
POLICIES = "templates/networkpolicies.yaml"
CONFIG = "templates/operator-config.yaml"


def objects(cluster: Any, *args: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in render(cluster, RELAY, *args)}


def config(cluster: Any, *args: str) -> dict[str, str]:
    (cm,) = render(cluster, CONFIG, *args)
    return dict(cm["data"])


def test_the_relay_deployment(cluster: Any) -> None:
    found = objects(cluster)
    pod = found[("Deployment", "r-edge-relay")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "localhost/vpes-edge:0.1.0" and container["args"] == ["relay"]
    env = {e["name"]: e.get("value") or e.get("valueFrom") for e in container["env"]}
    assert env["VPES_REDIS"] == "r-antispam-redis.ns1.svc:6379"
    assert env["VPES_REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "r-antispam", "key": "redis-password"}
    }
    assert env["VPES_MX_INTERNAL"] == "[r-edge-mx-internal.ns1.svc.cluster.local]:2525"
    assert env["VPES_HOSTNAME"] == "mx.example.net"
    assert env["VPES_MESSAGE_SIZE_LIMIT"].isdigit()
    # Rspamd's milter judges outbound mail; 5 refused in an hour hold a server.
    assert env["VPES_SPAM_MILTER"] == "inet:r-antispam.ns1.svc:11332"
    assert env["VPES_SPAM_HOLD_THRESHOLD"] == "5"
    assert {p["containerPort"] for p in container["ports"]} == {587, 9146, 9147}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["maps"] == "/etc/vpes/maps" and mounts["relay"] == "/etc/vpes/relay"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["maps"]["configMap"]["name"] == "r-edge-maps"
    sources = volumes["relay"]["projected"]["sources"]
    assert [s["secret"] for s in sources] == [
        {"name": f"r-edge-relay-{i}", "optional": True} for i in range(16)
    ]
    service = found[("Service", "r-edge-relay")]["spec"]
    assert service["type"] == "ClusterIP"
    assert {p["port"] for p in service["ports"]} == {587, 9146, 9147}
    assert ("PodDisruptionBudget", "r-edge-relay") in found
    fewer = objects(cluster, "--set", "edge.relay.keyShards=2", "--set", "edge.relay.replicas=1")
    pod = fewer[("Deployment", "r-edge-relay")]["spec"]["template"]["spec"]
    (relay,) = [v for v in pod["volumes"] if v["name"] == "relay"]
    assert len(relay["projected"]["sources"]) == 2
    assert ("PodDisruptionBudget", "r-edge-relay") not in fewer


def test_outbound_spam_settings(cluster: Any) -> None:
    def env(*args: str) -> dict[str, Any]:
        pod = objects(cluster, *args)[("Deployment", "r-edge-relay")]["spec"]["template"]
        return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}

    assert env("--set", "edge.relay.spamHoldThreshold=0")["VPES_SPAM_HOLD_THRESHOLD"] == "0"
    off = env("--set", "edge.relay.spamScan=false")
    assert "VPES_SPAM_MILTER" not in off and "VPES_SPAM_HOLD_THRESHOLD" not in off
    policies = {
        o["metadata"]["name"]: o["spec"]
        for o in render(cluster, POLICIES, "--set", "edge.relay.spamScan=false")
    }
    assert len(policies["r-edge-relay"]["egress"]) == 4  # no way to Rspamd
    assert all(
        "vpes.io/edge-role" not in str(rule["from"]) or "mx" in str(rule["from"])
        for rule in policies["r-antispam"]["ingress"]
        if "from" in rule
    )
    out = helm(
        cluster, "template", "r", str(CHART), "--set", "edge.relay.spamHoldThreshold=-1",
        check=False,
    )  # fmt: skip
    assert out.returncode != 0 and "spamHoldThreshold" in out.stderr


def test_the_srs_secret_is_mounted_never_in_the_environment(cluster: Any) -> None:
    found = objects(cluster)
    secret = found[("Secret", "r-edge-srs")]
    assert set(secret["data"]) == {"secret"}
    assert len(base64.b64decode(secret["data"]["secret"])) == 40
    mx_found = {(o["kind"], o["metadata"]["name"]): o for o in render(cluster, MX)}
    for pod in (
        found[("Deployment", "r-edge-relay")]["spec"]["template"]["spec"],
        mx_found[("Deployment", "r-edge-mx")]["spec"]["template"]["spec"],
    ):
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["VPES_SRS_DOMAIN"] == "mx.example.net"  # edge.mxHost
        # Only a volume carries it, root's alone (postsrsd reads it before it drops
        # to its user): no variable names the Secret.
        assert "r-edge-srs" not in str(container["env"])
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["srs"] == {"name": "srs", "mountPath": "/etc/vpes/srs", "readOnly": True}
        (volume,) = [v for v in pod["volumes"] if v["name"] == "srs"]
        assert volume["secret"] == {
            "secretName": "r-edge-srs",
            "defaultMode": 0o400,
            "items": [{"key": "secret", "path": "secret"}],
        }
    other = ("--set", "edge.relay.srsDomain=srs.example.org")
    (relay,) = objects(cluster, *other)[("Deployment", "r-edge-relay")]["spec"]["template"]["spec"][
        "containers"
    ]
    assert {"name": "VPES_SRS_DOMAIN", "value": "srs.example.org"} in relay["env"]
    out = helm(cluster, "template", "r", str(CHART), "--set", "edge.relay.srsDomain=Not_A_Domain",
               check=False)  # fmt: skip
    assert out.returncode != 0 and "/edge/relay/srsDomain" in out.stderr
    # Without the relay nothing is rewritten: no Secret, no SRS at the MX.
    off = ("--set", "edge.relay.enabled=false")
    assert not [o for o in render(cluster, MX, *off) if "srs" in str(o).lower()]


def test_the_mx_relayhost(cluster: Any) -> None:
    def env(*args: str) -> dict[str, str]:
        (dep,) = [o for o in render(cluster, MX, *args) if o["kind"] == "Deployment"]
        return {
            e["name"]: e.get("value")
            for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
        }

    assert "VPES_RELAYHOST" not in env()
    assert (
        env("--set", "edge.mx.relayHost=[smart.example]:25")["VPES_RELAYHOST"]
        == "[smart.example]:25"
    )


def test_the_relay_policy(cluster: Any) -> None:
    policies = {o["metadata"]["name"]: o["spec"] for o in render(cluster, POLICIES)}
    policy = policies["r-edge-relay"]
    smtp, status, _scrape = policy["ingress"]  # the scrape: test_chart_edge_metrics.py
    # 587: tenant pods, in any namespace, and nothing else.
    assert smtp["from"] == [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": naming.TENANT_APP}},
        }
    ]
    assert [p["port"] for p in smtp["ports"]] == [587]
    assert [p["port"] for p in status["ports"]] == [9146]
    operator, monitoring = status["from"]
    assert operator["podSelector"]["matchLabels"]["vpes.io/component"] == "operator"
    assert "namespaceSelector" not in operator  # the operator's own namespace
    assert monitoring == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    dns, mx, redis, rspamd, internet = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert mx["to"][0]["podSelector"]["matchLabels"]["vpes.io/edge-role"] == "mx"
    assert [p["port"] for p in mx["ports"]] == [2525]
    assert mx["to"][0]["podSelector"]["matchLabels"]["vpes.io/component"] == "edge"
    assert redis["to"][0]["podSelector"]["matchLabels"]["vpes.io/component"] == "antispam-redis"
    assert [p["port"] for p in redis["ports"]] == [6379]
    # Rspamd's milter and nothing else of it (nor any other pod's 11332).
    (rspamd_pods,) = rspamd["to"]
    assert list(rspamd_pods) == ["podSelector"]
    assert rspamd_pods["podSelector"]["matchLabels"]["vpes.io/component"] == "antispam"
    assert rspamd["ports"] == [{"protocol": "TCP", "port": 11332}]
    assert internet["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "10.0.0.0/8" in internet["to"][0]["ipBlock"]["except"]
    assert [p["port"] for p in internet["ports"]] == [25]


def test_the_operator_follows_the_relay(cluster: Any) -> None:
    data = config(cluster)
    assert data["VPES_RELAY_HOST"] == "[r-edge-relay.ns1.svc.cluster.local]:587"
    assert data["VPES_RELAY_KEY_SHARDS"] == "16"
    assert data["VPES_RELAY_SECRET_PREFIX"] == "r-edge-relay"
    assert data["VPES_RELAY_STATUS_URL"] == "http://r-edge-relay.ns1.svc:9146/status"
    off = ("--set", "edge.relay.enabled=false", "--set", "edge.relayHost=[smarthost]:25")
    assert objects(cluster, *off) == {}
    data = config(cluster, *off)
    assert data["VPES_RELAY_HOST"] == "[smarthost]:25"
    assert "VPES_RELAY_KEY_SHARDS" not in data and "VPES_RELAY_STATUS_URL" not in data
    policies = {o["metadata"]["name"] for o in render(cluster, POLICIES, *off)}
    assert "r-edge-relay" not in policies


def test_the_relay_needs_the_antispam_redis(cluster: Any) -> None:
    out = helm(
        cluster, "template", "r", str(CHART), "--set", "edge.antispam.enabled=false", check=False
    )
    assert out.returncode != 0 and "edge.relay needs edge.antispam.enabled" in out.stderr
