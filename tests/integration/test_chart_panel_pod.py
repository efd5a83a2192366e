"""The chart's customer panel, its pods: the Deployment (run from the operator image,
locked down), Service, budget, session Secret, optional Ingress, the values schema,
its NetworkPolicy, and that the panel process acts on the environment the chart gives
it. Rendered with `helm template` (no cluster); test_chart_panel.py has its RBAC."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path
from typing import Any

import pytest

from .helm_template import CHART, REPO, Doc, one, refusal, render

pytestmark = pytest.mark.integration


# -- the panel's pods ----------------------------------------------------------------


def panel_objects(helm: str, *sets: str) -> list[Doc]:
    return render(helm, "templates/panel-deployment.yaml", *sets)


def container_of(docs: list[Doc]) -> Doc:
    [container] = one(docs, "Deployment", "vpes-panel")["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_the_panel_runs_from_the_operator_image_locked_down(helm: str) -> None:
    docs = panel_objects(helm, "operator.image.tag=1.2.3")
    dep = one(docs, "Deployment", "vpes-panel")
    spec = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 2
    assert spec["serviceAccountName"] == "vpes-panel"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = container_of(docs)
    assert container["image"] == "localhost/vpes-operator:1.2.3"
    assert container["command"] == [
        "vpes-panel",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
        "--internal-port",
        "8081",
    ]
    assert container["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080},
        {"name": "internal", "containerPort": 8081},
    ]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector["vpes.io/component"] == "panel"
    service = one(docs, "Service", "vpes-panel")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    pdb = one(docs, "PodDisruptionBudget", "vpes-panel")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    # One replica: no budget (it would block every drain).
    single = panel_objects(helm, "panel.replicas=1")
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"]
    assert render(helm, "templates/panel-deployment.yaml", "panel.enabled=false") == []


def test_the_session_key_is_a_random_mounted_secret(helm: str) -> None:
    docs = panel_objects(helm)
    secret = one(docs, "Secret", "vpes-panel-session")
    key = base64.b64decode(secret["data"]["session-key"]).decode()
    assert len(key) == 64 and key.isalnum()
    again = one(panel_objects(helm), "Secret", "vpes-panel-session")
    assert base64.b64decode(again["data"]["session-key"]).decode() != key  # random, not fixed
    container = container_of(docs)
    env = env_of(container)
    assert "VPES_PANEL_SESSION_KEY" not in env  # never the key itself in the environment
    assert env["VPES_PANEL_SESSION_KEY_FILE"] == "/etc/vpes/panel/session-key"
    volumes = {
        v["name"]: v
        for v in one(docs, "Deployment", "vpes-panel")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["session"]["secret"]["secretName"] == "vpes-panel-session"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["session"] == {
        "name": "session",
        "mountPath": "/etc/vpes/panel",
        "readOnly": True,
    }
    template = (CHART / "templates" / "panel-deployment.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $session' in template  # kept on upgrade


def test_the_panels_environment_with_and_without_billing(helm: str) -> None:
    container = container_of(panel_objects(helm))
    env = env_of(container)
    assert env["VPES_PANEL_PUBLIC_URL"] == "https://panel.example.net"
    assert env["VPES_PANEL_BILLING_URL"] == "https://signup.example.net"
    assert env["STRIPE_API_KEY_FILE"] == "/etc/vpes/stripe/api-key"
    assert "STRIPE_API_BASE" not in env and "FORWARDED_ALLOW_IPS" not in env
    spec = one(panel_objects(helm), "Deployment", "vpes-panel")["spec"]["template"]["spec"]
    stripe = next(v for v in spec["volumes"] if v["name"] == "stripe")["secret"]
    # Billing's Stripe Secret, its API key only (not the webhook signing secret).
    assert stripe["secretName"] == "vpes-stripe"
    assert stripe["items"] == [{"key": "api-key", "path": "api-key"}]
    env = env_of(
        container_of(
            panel_objects(
                helm,
                "panel.publicUrl=https://my.example.org",
                "billing.stripeApiBase=http://stripe-mock.test:12111",
                "billing.stripeSecret.apiKeyKey=key",
                "panel.forwardedAllowIps=10.244.0.0/16",
            )
        )
    )
    assert env["VPES_PANEL_PUBLIC_URL"] == "https://my.example.org"
    assert env["STRIPE_API_BASE"] == "http://stripe-mock.test:12111"
    assert env["FORWARDED_ALLOW_IPS"] == "10.244.0.0/16"
    off = container_of(panel_objects(helm, "billing.enabled=false"))
    env = env_of(off)
    assert not {"VPES_PANEL_BILLING_URL", "STRIPE_API_KEY_FILE", "STRIPE_API_BASE"} & set(env)
    assert [m["name"] for m in off["volumeMounts"]] == ["session", "tmp"]


def test_the_panel_process_takes_the_charts_command_and_environment(
    helm: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`vpes-panel` (the chart's command, a script of the distribution) parses the chart's
    arguments, reads every variable the chart sets, and answers the probes' path."""
    from starlette.testclient import TestClient
    from vpes_panel import __main__ as panel_main

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["vpes-panel"] == "vpes_panel.__main__:main"
    container = container_of(
        panel_objects(helm, "panel.sessionIdleSeconds=600", "tenant.bcryptRounds=12")
    )
    env = env_of(container)
    key, stripe = tmp_path / "session-key", tmp_path / "api-key"
    key.write_text("k" * 64)
    stripe.write_text("sk_test_chart")
    env["VPES_PANEL_SESSION_KEY_FILE"], env["STRIPE_API_KEY_FILE"] = str(key), str(stripe)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls: list[list[Any]] = []
    monkeypatch.setattr(panel_main, "run", calls.append)
    monkeypatch.setattr(panel_main.Kube, "connect", classmethod(lambda cls, **kw: object()))
    monkeypatch.setattr(panel_main.logsafe, "configure", lambda level: None)
    seen: list[Any] = []
    real_build = panel_main.build_apps
    monkeypatch.setattr(panel_main, "build_apps", lambda s, k: seen.append(s) or real_build(s, k))
    panel_main.main(container["command"][1:])
    # The pages, and (webmail on) the webmail's password change on the internal port.
    [[public, internal]] = calls
    assert (public.host, public.port, public.proxy_headers) == ("0.0.0.0", 8080, True)
    assert (internal.host, internal.port, internal.proxy_headers) == ("0.0.0.0", 8081, False)
    assert TestClient(internal.app).get("/webmail/password").status_code == 405
    assert TestClient(internal.app).get("/login").status_code == 404
    app = public.app
    [settings] = seen
    assert settings.public_url == "https://panel.example.net"
    assert settings.session_key == b"k" * 64
    assert settings.billing_url == "https://signup.example.net"
    assert settings.stripe_api_key == "sk_test_chart"
    assert settings.session_idle_seconds == 600.0
    assert settings.session_max_seconds == 43200.0
    assert settings.bcrypt_rounds == 12
    assert settings.customer_service_account == "vpes-customer"
    path = container["livenessProbe"]["httpGet"]["path"]
    assert TestClient(app).get(path).status_code == 200
    # Every VPES_PANEL_* variable the chart sets is one the panel reads.
    source = (REPO / "panel" / "vpes_panel" / "settings.py").read_text()
    for name in env:
        if name.startswith("VPES_PANEL_"):
            assert f'"{name}"' in source or f'"{name.removesuffix("_FILE")}"' in source, name


def test_an_ingress_for_the_public_host_when_asked(helm: str) -> None:
    assert not [d for d in panel_objects(helm) if d["kind"] == "Ingress"]
    docs = panel_objects(
        helm,
        "panel.ingress.enabled=true",
        "panel.ingress.className=nginx",
        "panel.ingress.tlsSecretName=panel-tls",
        "panel.publicUrl=https://panel.mail.example.org:8443",
    )
    ingress = one(docs, "Ingress", "vpes-panel")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["panel.mail.example.org"], "secretName": "panel-tls"}]
    [rule] = spec["rules"]
    assert rule["host"] == "panel.mail.example.org"
    [path] = rule["http"]["paths"]
    assert path["path"] == "/" and path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {"name": "vpes-panel", "port": {"name": "http"}}


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("panel.forwardedAllowIps=*", "does not match pattern"),
        ("panel.publicUrl=panel.example.net", "does not match pattern"),
        ("panel.networkPolicy.apiServerCIDRs[0]=api.example.net", "does not match pattern"),
        ("panel.replicas=0", "minimum"),
        ("panel.colour=blue", "colour"),
    ],
)
def test_the_schema_refuses(helm: str, setting: str, complaint: str) -> None:
    stderr = refusal(helm, setting)
    assert complaint in stderr and "/panel" in stderr, stderr


# -- the panel's network policy -------------------------------------------------------


def panel_policy(helm: str, *sets: str) -> Doc:
    return one(render(helm, "templates/networkpolicies.yaml", *sets), "NetworkPolicy", "vpes-panel")


def test_the_panel_takes_its_port_and_reaches_dns_the_api_server_and_stripe(helm: str) -> None:
    spec = panel_policy(helm, "panel.networkPolicy.apiServerCIDRs={10.96.0.1/32,192.0.2.10/32}")[
        "spec"
    ]
    assert spec["podSelector"]["matchLabels"]["vpes.io/component"] == "panel"
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"][0] == {"ports": [{"protocol": "TCP", "port": 8080}]}
    # (The webmail's pods on the internal port: test_chart_webmail.py.)
    assert len(spec["ingress"]) == 2
    dns, api, stripe = spec["egress"]
    assert dns["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
    ]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api["to"] == [
        {"ipBlock": {"cidr": "10.96.0.1/32"}},
        {"ipBlock": {"cidr": "192.0.2.10/32"}},
    ]
    assert [p["port"] for p in api["ports"]] == [443, 6443]
    # Stripe on the internet: 443, never the cluster's own private ranges.
    [block] = stripe["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "10.0.0.0/8" in block["ipBlock"]["except"]
    assert stripe["ports"] == [{"protocol": "TCP", "port": 443}]


def test_without_billing_no_stripe_and_with_a_mock_its_port(helm: str) -> None:
    spec = panel_policy(
        helm,
        "billing.enabled=false",
        "panel.networkPolicy.apiServerCIDRs={192.0.2.10/32}",
        "panel.networkPolicy.apiServerPorts={6443}",
    )["spec"]
    _dns, api = spec["egress"]
    assert api["to"] == [{"ipBlock": {"cidr": "192.0.2.10/32"}}]
    assert api["ports"] == [{"protocol": "TCP", "port": 6443}]
    mock = panel_policy(helm, "billing.stripeApiBase=http://stripe-mock.test:12111")["spec"]
    assert mock["egress"][-1] == {"ports": [{"protocol": "TCP", "port": 12111}]}


def test_unknown_api_server_addresses_open_its_usual_ports_only(helm: str) -> None:
    """`helm template` cannot look the API server up: any address, on 443 and 6443."""
    spec = panel_policy(helm, "billing.enabled=false")["spec"]
    _dns, api = spec["egress"]
    assert api == {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}
    names = [
        d["metadata"]["name"]
        for d in render(helm, "templates/networkpolicies.yaml", "panel.enabled=false")
    ]
    assert "vpes-panel" not in names
