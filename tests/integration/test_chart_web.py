"""The chart's vpes-web: read-only RBAC, a locked-down Deployment run from the operator
image with the operator's own settings, its Service, budget, optional Ingress (the
edge's web name and a catch-all) and NetworkPolicy (its port in; DNS and the API
server out), and that the process acts on what the chart gives it. Rendered with
`helm template` (no cluster); test_wellknown_web.py runs the RBAC against the real
API server."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from vpes_operator.settings import ENV_PREFIX, OperatorSettings

from .helm_template import NAMESPACE, REPO, Doc, one, refusal, render

pytestmark = pytest.mark.integration
WEB = "templates/web-deployment.yaml"
RBAC = "templates/web-rbac.yaml"
POLICIES = "templates/networkpolicies.yaml"
DAV_POLICY = "templates/web-networkpolicy.yaml"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def pod_of(docs: list[Doc], name: str = "vpes-web") -> Doc:
    return one(docs, "Deployment", name)["spec"]["template"]  # type: ignore[no-any-return]


def container_of(docs: list[Doc]) -> Doc:
    [container] = pod_of(docs)["spec"]["containers"]
    return container  # type: ignore[no-any-return]


# -- RBAC ------------------------------------------------------------------------


def test_the_web_service_account_may_only_read_servers_plans_and_the_acme_answers(
    helm: str,
) -> None:
    docs = render(helm, RBAC)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("ClusterRole", "vpes-web"),
        ("ClusterRoleBinding", "vpes-web"),
        ("Role", "vpes-web-acme"),
        ("RoleBinding", "vpes-web-acme"),
        ("ServiceAccount", "vpes-web"),
    ]
    role = one(docs, "ClusterRole", "vpes-web")
    assert role["rules"] == [
        {
            "apiGroups": ["vpes.io"],
            "resources": ["personalmailservers"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["vpes.io"],
            "resources": ["mailplans"],
            "verbs": ["get", "list", "watch"],
        },
    ]
    binding = one(docs, "ClusterRoleBinding", "vpes-web")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "vpes-web",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "vpes-web", "namespace": NAMESPACE}
    ]
    # In the release's namespace, the one ConfigMap of the ACME answers, read only, by
    # name (the name the operator and vpes-web are both given).
    acme = one(docs, "Role", "vpes-web-acme")
    assert acme["metadata"]["namespace"] == NAMESPACE
    assert acme["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["vpes-acme-http01"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    config = one(render(helm, None), "ConfigMap", "vpes-operator")["data"]
    assert config["VPES_ACME_HTTP01_CONFIGMAP"] == "vpes-acme-http01"
    acme_binding = one(docs, "RoleBinding", "vpes-web-acme")
    assert acme_binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "vpes-web-acme",
    }
    assert acme_binding["subjects"] == binding["subjects"]
    # Nothing else in the whole chart grants the web's account anything.
    granted = [
        d["metadata"]["name"]
        for d in render(helm, None)
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and any(s.get("name") == "vpes-web" for s in d.get("subjects") or [])
    ]
    assert sorted(granted) == ["vpes-web", "vpes-web-acme"]
    assert render(helm, RBAC, "web.enabled=false") == []


def test_a_renamed_service_account_is_the_one_bound_and_run(helm: str) -> None:
    docs = render(helm, None, "web.serviceAccount.name=autoconfig")
    assert one(docs, "ServiceAccount", "autoconfig")["metadata"]["namespace"] == NAMESPACE
    assert one(docs, "ClusterRoleBinding", "vpes-web")["subjects"][0]["name"] == "autoconfig"
    assert pod_of(docs)["spec"]["serviceAccountName"] == "autoconfig"


# -- the pods ----------------------------------------------------------------------


def test_the_web_runs_from_the_operator_image_locked_down(helm: str) -> None:
    docs = render(helm, WEB, "operator.image.tag=1.2.3")
    dep = one(docs, "Deployment", "vpes-web")
    assert dep["spec"]["replicas"] == 2
    spec = dep["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "vpes-web"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["enableServiceLinks"] is False
    container = container_of(docs)
    assert container["image"] == "localhost/vpes-operator:1.2.3"
    assert container["command"] == ["vpes-web", "--host", "0.0.0.0", "--port", "8080"]
    assert container["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "volumeMounts" not in container  # no Secret, nothing written
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector["vpes.io/component"] == "web"
    service = one(docs, "Service", "vpes-web")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert one(docs, "PodDisruptionBudget", "vpes-web")["spec"]["selector"]["matchLabels"] == (
        selector
    )
    single = render(helm, WEB, "web.replicas=1")
    assert not [d for d in single if d["kind"] == "PodDisruptionBudget"]
    pinned = container_of(render(helm, WEB, f"operator.image.digest={DIGEST}"))
    assert pinned["image"] == f"localhost/vpes-operator@{DIGEST}"
    assert render(helm, WEB, "web.enabled=false") == []


@pytest.mark.parametrize("name", ["vpes-web", "vpes-panel"])
def test_web_and_panel_read_the_operators_settings_and_roll_when_they_change(
    helm: str, name: str
) -> None:
    template = WEB if name == "vpes-web" else "templates/panel-deployment.yaml"
    pod = pod_of(render(helm, template), name)
    [container] = pod["spec"]["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "vpes-operator"}}]
    checksum = pod["metadata"]["annotations"]["checksum/config"]
    changed = pod_of(render(helm, template, "dns.mtaStsMode=enforce"), name)
    assert changed["metadata"]["annotations"]["checksum/config"] != checksum
    again = pod_of(render(helm, template), name)
    assert again["metadata"]["annotations"]["checksum/config"] == checksum


def test_the_web_process_takes_the_charts_command_and_environment(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`vpes-web` (the chart's command, a script of the distribution) parses the chart's
    arguments, reads the operator's ConfigMap and its own variables, answers the probes'
    path, and tells clients the hosts the chart configured."""
    from starlette.testclient import TestClient
    from vpes_panel.wellknown import __main__ as web_main

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["vpes-web"] == "vpes_panel.wellknown.__main__:main"
    sets = (
        "edge.imapHost=imap.provider.example",
        "web.hostedSettleSeconds=7",
        "web.davMaxBody=2097152",
    )
    docs = render(helm, None, *sets)
    config = one(docs, "ConfigMap", "vpes-operator")["data"]
    container = container_of(docs)
    env = {**config, **{e["name"]: e["value"] for e in container["env"]}}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(web_main.uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr(web_main.Kube, "connect", classmethod(lambda cls, **kw: object()))
    monkeypatch.setattr(web_main.logsafe, "configure", lambda level: None)
    seen: list[Any] = []
    real = web_main.build_app
    monkeypatch.setattr(
        web_main, "build_app", lambda s, h, **kw: seen.append((s, h, kw)) or real(s, h, **kw)
    )
    web_main.main(container["command"][1:])
    [(app, kw)] = calls
    assert (kw["host"], kw["port"]) == ("0.0.0.0", 8080)
    [(settings, _hosted, kw)] = seen
    assert kw["acme"].name == "vpes-acme-http01"  # the ConfigMap the operator writes
    assert settings.hosted_settle_seconds == 7.0
    assert settings.dav_max_body == 2097152
    assert settings.mail.imap_host == "imap.provider.example"
    assert settings.mail.edge_web_host == "web.example.net"
    assert settings.mail.mta_sts_mode == "testing"
    assert TestClient(app).get(container["livenessProbe"]["httpGet"]["path"]).text == "ok"
    # Every VPES_WEB_* variable the chart sets is one the service reads (but the
    # operator's own settings about the web pods, such as VPES_WEB_POD_LABELS).
    source = (REPO / "panel" / "vpes_panel" / "wellknown" / "settings.py").read_text()
    operators = {ENV_PREFIX + field.upper() for field in OperatorSettings.model_fields}
    for name in env:
        if name.startswith("VPES_WEB_") and name not in operators:
            assert f'"{name}"' in source, name


# -- the Ingress -------------------------------------------------------------------


def test_an_ingress_for_the_edge_web_name_and_a_catch_all_when_asked(helm: str) -> None:
    assert not [d for d in render(helm, WEB) if d["kind"] == "Ingress"]
    docs = render(
        helm,
        WEB,
        "web.ingress.enabled=true",
        "web.ingress.className=nginx",
        "web.ingress.tlsSecretName=web-tls",
        "dns.edgeWebHost=setup.provider.example",
    )
    spec = one(docs, "Ingress", "vpes-web")["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["setup.provider.example"], "secretName": "web-tls"}]
    named, catch_all = spec["rules"]
    assert named["host"] == "setup.provider.example"
    assert "host" not in catch_all  # the customers' names, whatever they are
    wanted = ["/.well-known", "/mail", "/autodiscover", "/Autodiscover", "/dav"]
    for rule in (named, catch_all):
        paths = rule["http"]["paths"]
        assert [p["path"] for p in paths] == wanted
        for p in paths:
            assert p["pathType"] == "Prefix"
            assert p["backend"]["service"] == {"name": "vpes-web", "port": {"name": "http"}}
    only = one(
        render(helm, WEB, "web.ingress.enabled=true", "web.ingress.catchAll=false"),
        "Ingress",
        "vpes-web",
    )["spec"]
    assert [r["host"] for r in only["rules"]] == ["web.example.net"]
    assert "tls" not in only


# -- the network policy --------------------------------------------------------------


def web_policy(helm: str, *sets: str) -> Doc:
    return one(render(helm, POLICIES, *sets), "NetworkPolicy", "vpes-web")


def test_the_web_takes_its_port_and_reaches_only_dns_and_the_api_server(helm: str) -> None:
    spec = web_policy(
        helm,
        "web.networkPolicy.apiServerCIDRs={192.0.2.10/32}",
        "web.networkPolicy.apiServerPorts={6443}",
        "web.networkPolicy.dnsNamespace=dns",
    )["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    assert spec["egress"] == [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {
            "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}],
            "ports": [{"protocol": "TCP", "port": 6443}],
        },
    ]
    # helm template cannot look the API server up: any address on its usual ports only.
    _dns, api = web_policy(helm)["spec"]["egress"]
    assert api == {"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}


def test_the_web_policy_selects_the_web_pods_and_no_other(helm: str) -> None:
    docs = render(helm, None)
    wanted = web_policy(helm)["spec"]["podSelector"]["matchLabels"]
    pods = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    }
    assert wanted.items() <= pods.pop("vpes-web").items()
    assert pods, "no other pods rendered: the check below would prove nothing"
    for name, labels in pods.items():
        assert not wanted.items() <= labels.items(), f"the web's policy selects {name}"
    names = [d["metadata"]["name"] for d in render(helm, POLICIES, "web.enabled=false")]
    assert "vpes-web" not in names and "vpes-panel" in names


def test_the_web_reaches_the_tenants_radicale_and_nothing_else_of_theirs(helm: str) -> None:
    from vpes_operator import naming

    [policy] = render(helm, DAV_POLICY)
    assert policy["metadata"]["name"] == "vpes-web-dav"
    spec = policy["spec"]
    assert spec["podSelector"] == web_policy(helm)["spec"]["podSelector"]
    assert spec["policyTypes"] == ["Egress"]  # the web's ingress stays its other policy's
    app = naming.selector_labels("any")["app.kubernetes.io/name"]
    assert spec["egress"] == [
        {
            "to": [
                {
                    "namespaceSelector": {},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": app}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 5232}],
        }
    ]
    assert render(helm, DAV_POLICY, "web.enabled=false") == []
    assert render(helm, DAV_POLICY, "networkPolicy.enabled=false") == []


def test_the_dav_path_reaches_the_web_at_the_edge_web_name(helm: str) -> None:
    docs = render(helm, WEB, "web.ingress.enabled=true")
    rules = one(docs, "Ingress", "vpes-web")["spec"]["rules"]
    assert "/dav" in [p["path"] for p in rules[0]["http"]["paths"]]
    env = {e["name"]: e["value"] for e in container_of(docs)["env"]}
    assert env["VPES_WEB_DAV_MAX_BODY"] == str(10 * 1024 * 1024)


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("web.replicas=0", "minimum"),
        ("web.hostedSettleSeconds=-1", "minimum"),
        ("web.davMaxBody=100", "minimum"),
        ("web.ingress.paths[0]=mail", "does not match pattern"),
        ("web.networkPolicy.apiServerCIDRs[0]=api.example.net", "does not match pattern"),
        ("web.colour=blue", "colour"),
    ],
)
def test_the_schema_refuses(helm: str, setting: str, complaint: str) -> None:
    stderr = refusal(helm, setting)
    assert complaint in stderr and "/web" in stderr, stderr
