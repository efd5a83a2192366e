"""The chart's customer panel: its RBAC (its own role, the customer role the operator
binds per namespace, the impersonation role), the operator's access to make those
bindings, the panel's Deployment, Service, session Secret and NetworkPolicy, and that
the panel process acts on the environment the chart gives it. Rendered with `helm
template` (no cluster); test_chart_panel_policy.py runs the RBAC and the operator's
admission policy against the real API server."""

from __future__ import annotations

import base64
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from vpes_devcluster import binaries
from vpes_devcluster.errors import ClusterError

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "vpes"
RELEASE, NAMESPACE = "vpes", "vpes-system"

Doc = dict[str, Any]

# What the panel needs in a customer's namespace, as that namespace's vpes-customer.
CUSTOMER_RULES = [
    {
        "apiGroups": ["vpes.io"],
        "resources": ["personalmailservers"],
        "verbs": ["get", "update", "patch"],
    },
    {
        "apiGroups": ["vpes.io"],
        "resources": ["mailbackups", "mailrestores"],
        "verbs": ["get", "list", "create"],
    },
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get"],
        "resourceNames": ["vpes-logins"],
    },
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "patch"],
        "resourceNames": ["vpes-panel"],
    },
]
IMPERSONATE_RULES = [
    {
        "apiGroups": [""],
        "resources": ["serviceaccounts"],
        "verbs": ["impersonate"],
        "resourceNames": ["vpes-customer"],
    }
]
PANEL_RULES = [
    {
        "apiGroups": ["vpes.io"],
        "resources": ["personalmailservers"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": ["vpes.io"], "resources": ["mailplans"], "verbs": ["get", "list"]},
]
OPERATOR_PANEL_ENV = {
    "VPES_PANEL_SERVICE_ACCOUNT": "vpes-panel",
    "VPES_PANEL_NAMESPACE": NAMESPACE,
    "VPES_CUSTOMER_CLUSTER_ROLE": "vpes-customer",
    "VPES_PANEL_IMPERSONATE_CLUSTER_ROLE": "vpes-panel-impersonate",
}


@pytest.fixture(scope="module")
def helm() -> str:
    """The helm that tools/k8s builds (as the integration tier uses), else one on PATH."""
    try:
        return str(binaries.bin_dir() / "helm")
    except ClusterError as e:
        found = shutil.which("helm")
        if found is None:
            pytest.skip(f"no helm: {e}")
        return found


def render(helm: str, template: str | None = None, *sets: str) -> list[Doc]:
    """What the chart renders for release vpes in vpes-system (one template, or all)."""
    args = [helm, "template", RELEASE, str(CHART), "-n", NAMESPACE]
    if template:
        args += ["--show-only", template]
    for value in sets:
        args += ["--set", value]
    out = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    if out.returncode != 0 and "could not find template" in out.stderr:
        return []  # helm's way of saying it rendered nothing
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


# -- RBAC ------------------------------------------------------------------------


def test_the_customer_role_is_exactly_its_namespace_objects_and_two_secrets(helm: str) -> None:
    role = one(render(helm, "templates/panel-rbac.yaml"), "ClusterRole", "vpes-customer")
    assert role["rules"] == CUSTOMER_RULES
    for rule in role["rules"]:
        if "secrets" in rule["resources"]:
            # Never listed, never watched, never one the rule does not name.
            assert rule.get("resourceNames"), rule
            assert not {"list", "watch", "create", "delete"} & set(rule["verbs"]), rule
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule


def test_the_panel_may_impersonate_only_vpes_customer(helm: str) -> None:
    docs = render(helm, "templates/panel-rbac.yaml")
    role = one(docs, "ClusterRole", "vpes-panel-impersonate")
    assert role["rules"] == IMPERSONATE_RULES


def test_the_panels_own_role_reads_servers_and_plans_only(helm: str) -> None:
    docs = render(helm, "templates/panel-rbac.yaml")
    role = one(docs, "ClusterRole", "vpes-panel")
    assert role["rules"] == PANEL_RULES
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in role["rules"])
    assert not any("secrets" in r["resources"] for r in role["rules"])
    sa = one(docs, "ServiceAccount", "vpes-panel")
    assert sa["metadata"]["namespace"] == NAMESPACE
    binding = one(docs, "ClusterRoleBinding", "vpes-panel")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "vpes-panel",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "vpes-panel", "namespace": NAMESPACE}
    ]
    # Exactly these objects: the two per-namespace roles are the operator's to bind.
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("ClusterRole", "vpes-customer"),
        ("ClusterRole", "vpes-panel"),
        ("ClusterRole", "vpes-panel-impersonate"),
        ("ClusterRoleBinding", "vpes-panel"),
        ("ServiceAccount", "vpes-panel"),
    ]


def test_the_chart_binds_neither_customer_nor_impersonate_role(helm: str) -> None:
    bound = [
        (d["kind"], d["metadata"]["name"])
        for d in render(helm)
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and d["roleRef"]["name"] in ("vpes-customer", "vpes-panel-impersonate")
    ]
    assert bound == []


def test_the_operator_may_bind_those_two_roles_only(helm: str) -> None:
    docs = render(helm, "templates/operator-rbac.yaml")
    rules = one(docs, "ClusterRole", "vpes-operator")["rules"]
    bind = [r for r in rules if "bind" in r["verbs"] or "escalate" in r["verbs"]]
    assert bind == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": ["vpes-customer", "vpes-panel-impersonate"],
        }
    ]
    by_resource = {tuple(r["resources"]): r["verbs"] for r in rules}
    assert by_resource[("serviceaccounts",)] == ["get", "create", "patch"]
    assert by_resource[("rolebindings",)] == ["get", "create", "patch"]
    policy = one(docs, "ValidatingAdmissionPolicy", "vpes-operator-bindings")
    [match] = policy["spec"]["matchConditions"]
    assert match["expression"].endswith('"system:serviceaccount:vpes-system:vpes-operator"')
    binding = one(docs, "ValidatingAdmissionPolicyBinding", "vpes-operator-bindings")
    assert binding["spec"] == {
        "policyName": "vpes-operator-bindings",
        "validationActions": ["Deny"],
    }
    # The operator's namespace scope covers them too (no binding in kube-system).
    scope = one(docs, "ValidatingAdmissionPolicy", "vpes-operator-scope")
    covered = {
        res
        for rule in scope["spec"]["matchConstraints"]["resourceRules"]
        for res in rule["resources"]
    }
    assert {"serviceaccounts", "rolebindings"} <= covered
    # Panel off: no per-namespace access, so no such permission.
    off = render(helm, "templates/operator-rbac.yaml", "panel.enabled=false")
    rules = one(off, "ClusterRole", "vpes-operator")["rules"]
    assert not [
        r
        for r in rules
        if {"serviceaccounts", "rolebindings", "clusterroles"} & set(r["resources"])
    ]
    assert render(helm, "templates/panel-rbac.yaml", "panel.enabled=false") == []


def test_a_renamed_panel_service_account_is_the_one_bound_and_admitted(helm: str) -> None:
    name = "customer-panel"
    docs = render(helm, None, f"panel.serviceAccount.name={name}")
    assert one(docs, "ServiceAccount", name)["metadata"]["namespace"] == NAMESPACE
    assert one(docs, "ClusterRoleBinding", "vpes-panel")["subjects"][0]["name"] == name
    policy = one(docs, "ValidatingAdmissionPolicy", "vpes-operator-bindings")
    panel = next(v for v in policy["spec"]["variables"] if v["name"] == "panelBinding")
    assert f'["{NAMESPACE}", "{name}"]' in panel["expression"]
    dep = one(docs, "Deployment", "vpes-panel")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == name
    config = one(docs, "ConfigMap", "vpes-operator")["data"]
    assert config["VPES_PANEL_SERVICE_ACCOUNT"] == name


# -- the operator's settings -------------------------------------------------------


def test_the_operator_is_told_the_panels_names_when_it_is_on(helm: str) -> None:
    (config,) = render(helm, "templates/operator-config.yaml")
    env = config["data"]
    assert {k: env[k] for k in OPERATOR_PANEL_ENV} == OPERATOR_PANEL_ENV
    assert env["VPES_PANEL_URL"] == "https://panel.example.net"
    (config,) = render(helm, "templates/operator-config.yaml", "panel.enabled=false")
    assert not set(OPERATOR_PANEL_ENV) & set(config["data"])
    # The address the operator tells customers follows panel.publicUrl.
    (config,) = render(
        helm, "templates/operator-config.yaml", "panel.publicUrl=https://my.example.org"
    )
    assert config["data"]["VPES_PANEL_URL"] == "https://my.example.org"


def test_the_names_match_the_panel_tests_and_the_panel_code() -> None:
    """The panel's integration tests run the operator with these names (and the chart's
    RBAC rendered for release vpes); the panel's code uses the same Secret and SA names."""
    from vpes_panel import settings

    from . import panel_support

    assert panel_support.OPERATOR_PANEL_ENV == OPERATOR_PANEL_ENV
    assert panel_support.PANEL_RBAC == "templates/panel-rbac.yaml"
    assert settings.CUSTOMER_SA == "vpes-customer"
    named = [r["resourceNames"][0] for r in CUSTOMER_RULES if "resourceNames" in r]
    assert named == [settings.LOGINS_SECRET, settings.PANEL_SECRET]


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
    assert container["command"] == ["vpes-panel", "--host", "0.0.0.0", "--port", "8080"]
    assert container["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080}]
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
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(panel_main.uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr(panel_main.Kube, "connect", classmethod(lambda cls, **kw: object()))
    monkeypatch.setattr(panel_main.logsafe, "configure", lambda level: None)
    seen: list[Any] = []
    real_build = panel_main.build_app
    monkeypatch.setattr(panel_main, "build_app", lambda s, k: seen.append(s) or real_build(s, k))
    panel_main.main(container["command"][1:])
    [(app, kw)] = calls
    assert (kw["host"], kw["port"], kw["proxy_headers"]) == ("0.0.0.0", 8080, True)
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
    out = subprocess.run(
        [helm, "template", "r", str(CHART), "--set", setting],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode != 0, "the values schema accepted it"
    assert complaint in out.stderr and "/panel" in out.stderr, out.stderr


# -- the panel's network policy -------------------------------------------------------


def panel_policy(helm: str, *sets: str) -> Doc:
    return one(render(helm, "templates/networkpolicies.yaml", *sets), "NetworkPolicy", "vpes-panel")


def test_the_panel_takes_its_port_and_reaches_dns_the_api_server_and_stripe(helm: str) -> None:
    spec = panel_policy(helm, "panel.networkPolicy.apiServerCIDRs={10.96.0.1/32,192.0.2.10/32}")[
        "spec"
    ]
    assert spec["podSelector"]["matchLabels"]["vpes.io/component"] == "panel"
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
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
