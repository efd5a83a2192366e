"""The chart's webmail: the Deployment (locked down, the contract's environment, the
domains file from the operator's maps), its Secret, Service, budget and Ingress; its
PostgreSQL (StatefulSet, PVC, Service); the panel's internal port for the password
change; their NetworkPolicies, each admitting exactly its peers; the values schema's
refusals; webmail off; and the dev cluster's values. Rendered with `helm template`."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from vpes_devcluster import chart as devchart

from .helm_template import Doc, one, refusal, render

pytestmark = pytest.mark.integration

WEBMAIL = "templates/webmail.yaml"
DB = "templates/webmail-db.yaml"
POLICIES = "templates/webmail-networkpolicy.yaml"
SVC = "vpes-system.svc.cluster.local"
WEBMAIL_PODS = {
    "app.kubernetes.io/part-of": "vpes",
    "app.kubernetes.io/instance": "vpes",
    "vpes.io/component": "webmail",
}
DB_PODS = WEBMAIL_PODS | {"vpes.io/component": "webmail-db"}
PANEL_PODS = WEBMAIL_PODS | {"vpes.io/component": "panel"}
PROXY_PODS = WEBMAIL_PODS | {"vpes.io/component": "edge", "vpes.io/edge-role": "proxy"}
LOCKED = {
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def pod_of(docs: list[Doc], kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, kind, name)["spec"]["template"]["spec"]
    return spec


def env_of(container: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def decoded(secret: Doc) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


# -- the webmail's pods -----------------------------------------------------------------


def test_the_webmail_runs_locked_down_with_the_contracts_environment(helm: str) -> None:
    docs = render(helm, WEBMAIL)
    dep = one(docs, "Deployment", "vpes-webmail")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"]["matchLabels"] == WEBMAIL_PODS
    pod = pod_of(docs, "Deployment", "vpes-webmail")
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 33,
        "runAsGroup": 33,
        "fsGroup": 33,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    [c] = pod["containers"]
    assert c["image"] == "localhost/vpes-webmail:0.1.0"
    assert c["securityContext"] == LOCKED
    assert c["resources"]["limits"]["memory"] == "256Mi"
    assert c["ports"] == [{"name": "http", "containerPort": 8080}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    proxy = f"vpes-edge-proxy-internal.{SVC}"
    assert env_of(c) == {
        "VPES_WEBMAIL_IMAP_HOST": f"tls://{proxy}:143",
        "VPES_WEBMAIL_SMTP_HOST": f"tls://{proxy}:587",
        "VPES_WEBMAIL_SIEVE_HOST": f"tls://{proxy}:4190",
        "VPES_WEBMAIL_TLS_VERIFY": "0",
        "VPES_WEBMAIL_DB_DSN": {"secretKeyRef": {"name": "vpes-webmail", "key": "db-dsn"}},
        "VPES_WEBMAIL_DES_KEY": {"secretKeyRef": {"name": "vpes-webmail", "key": "des-key"}},
        "VPES_WEBMAIL_DOMAINS": "/etc/vpes/webmail/domains",
        "VPES_WEBMAIL_PASSWORD_URL": f"http://vpes-panel-internal.{SVC}:8081/webmail/password",
        "VPES_WEBMAIL_MAX_UPLOAD": "10485760",
        "VPES_WEBMAIL_PRODUCT_NAME": "Webmail",
    }
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["domains"]["mountPath"] == "/etc/vpes/webmail" and mounts["domains"]["readOnly"]
    assert {mounts[n]["mountPath"] for n in ("run", "tmp")} == {"/run/vpes-webmail", "/tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # The operator's maps, that one key only; not optional: no list, no logins.
    assert volumes["domains"]["configMap"] == {
        "name": "vpes-edge-maps",
        "items": [{"key": "webmail-domains", "path": "domains"}],
    }
    assert "emptyDir" in volumes["run"] and "emptyDir" in volumes["tmp"]
    service = one(docs, "Service", "vpes-webmail")
    assert service["spec"]["selector"] == WEBMAIL_PODS
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert one(docs, "PodDisruptionBudget", "vpes-webmail")["spec"]["maxUnavailable"] == 1
    assert not [d for d in docs if d["kind"] == "Ingress"]


def test_the_secret_holds_a_dsn_made_from_its_password_and_a_des_key(helm: str) -> None:
    first = decoded(one(render(helm, WEBMAIL), "Secret", "vpes-webmail"))
    assert set(first) == {"db-password", "db-dsn", "des-key"}
    assert len(first["des-key"]) == 24 and len(first["db-password"]) == 32
    assert first["db-dsn"] == (
        f"pgsql://roundcube:{first['db-password']}@vpes-webmail-db.{SVC}:5432/roundcube"
    )
    # helm template cannot look the old one up: a new secret each time (an upgrade of
    # an installed release keeps the old one: lookup).
    again = decoded(one(render(helm, WEBMAIL), "Secret", "vpes-webmail"))
    assert again["des-key"] != first["des-key"]


def test_the_webmail_takes_its_values(helm: str) -> None:
    docs = render(
        helm,
        WEBMAIL,
        "webmail.replicas=1",
        "webmail.image.tag=2.0.0",
        "webmail.maxUpload=33554432",
        "webmail.productName=Example Mail",
        "webmail.tlsVerify=true",
        "webmail.resources.limits.memory=512Mi",
        "clusterDomain=k8s.example.internal",
    )
    [c] = pod_of(docs, "Deployment", "vpes-webmail")["containers"]
    env = env_of(c)
    assert c["image"] == "localhost/vpes-webmail:2.0.0"
    assert env["VPES_WEBMAIL_MAX_UPLOAD"] == "33554432"
    assert env["VPES_WEBMAIL_PRODUCT_NAME"] == "Example Mail"
    assert env["VPES_WEBMAIL_TLS_VERIFY"] == "1"
    assert env["VPES_WEBMAIL_IMAP_HOST"].endswith(".vpes-system.svc.k8s.example.internal:143")
    assert c["resources"]["limits"]["memory"] == "512Mi"
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    dsn = decoded(one(docs, "Secret", "vpes-webmail"))["db-dsn"]
    assert "@vpes-webmail-db.vpes-system.svc.k8s.example.internal:5432/" in dsn
    pinned = render(helm, WEBMAIL, "webmail.image.digest=sha256:" + "a" * 64)
    [c] = pod_of(pinned, "Deployment", "vpes-webmail")["containers"]
    assert c["image"] == "localhost/vpes-webmail@sha256:" + "a" * 64


# -- verifying the login proxy's certificate ----------------------------------------

ACME = "certificates.acme.directoryUrl=https://acme.example.net/directory"
TLS_ENV = ("VPES_WEBMAIL_TLS_VERIFY", "VPES_WEBMAIL_TLS_PEER_NAME", "VPES_WEBMAIL_TLS_CA")


def tls_of(helm: str, *sets: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The webmail's TLS environment, its mounts and its volumes for these values."""
    pod = pod_of(render(helm, WEBMAIL, *sets), "Deployment", "vpes-webmail")
    [c] = pod["containers"]
    env = {k: v for k, v in env_of(c).items() if k in TLS_ENV}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    return env, mounts, {v["name"]: v for v in pod["volumes"]}


@pytest.mark.parametrize(
    ("sets", "verify"),
    [
        # auto (the default): on where the platform obtains the edge's certificates ...
        ((), False),
        ((ACME,), True),
        (("certificates.issuer.name=letsencrypt",), True),
        (("webmail.tlsVerify=auto", ACME), True),
        # ... into the Secret the edge mounts (none: the edge stays self-signed).
        ((ACME, "edge.tls.secretName="), False),
        # true and false force it.
        (("webmail.tlsVerify=true",), True),
        ((ACME, "webmail.tlsVerify=false"), False),
    ],
)
def test_auto_verifies_where_the_edge_gets_real_certificates(
    helm: str, sets: tuple[str, ...], verify: bool
) -> None:
    env, mounts, volumes = tls_of(helm, *sets)
    if verify:
        # The proxy is reached by its Service name; its certificate names the edge's hosts.
        assert env == {
            "VPES_WEBMAIL_TLS_VERIFY": "1",
            "VPES_WEBMAIL_TLS_PEER_NAME": "imap.example.net",
        }
    else:
        assert env == {"VPES_WEBMAIL_TLS_VERIFY": "0"}
    assert "tls-ca" not in mounts and "tls-ca" not in volumes


def test_the_peer_name_is_the_edges_imap_host(helm: str) -> None:
    env, _, _ = tls_of(helm, ACME, "edge.imapHost=mail.provider.test")
    assert env["VPES_WEBMAIL_TLS_PEER_NAME"] == "mail.provider.test"
    listed = "certificates.acme.edgeNames={mx.example.net,imap.example.net}"
    assert tls_of(helm, ACME, listed)[0]["VPES_WEBMAIL_TLS_PEER_NAME"] == "imap.example.net"


def test_a_private_ca_is_mounted_read_only_when_verifying(helm: str) -> None:
    ca = ("webmail.tlsCA.configMap=private-ca", "webmail.tlsCA.key=root.pem")
    env, mounts, volumes = tls_of(helm, ACME, *ca)
    assert env["VPES_WEBMAIL_TLS_CA"] == "/etc/vpes/webmail-ca/ca.crt"
    assert mounts["tls-ca"] == {
        "name": "tls-ca",
        "mountPath": "/etc/vpes/webmail-ca",
        "readOnly": True,
    }
    assert volumes["tls-ca"]["configMap"] == {
        "name": "private-ca",
        "items": [{"key": "root.pem", "path": "ca.crt"}],
    }
    # Not verifying: nothing would read it.
    env, mounts, volumes = tls_of(helm, "webmail.tlsVerify=false", *ca)
    assert env == {"VPES_WEBMAIL_TLS_VERIFY": "0"}
    assert "tls-ca" not in mounts and "tls-ca" not in volumes


@pytest.mark.parametrize(
    # The edge's certificate has those names on either path: the ACME client's order,
    # or the Certificate the operator makes for cert-manager.
    "path",
    [ACME, "certificates.issuer.name=letsencrypt"],
)
def test_edge_names_without_the_imap_host_are_refused_when_verifying(helm: str, path: str) -> None:
    stderr = refusal(helm, f"{path},certificates.acme.edgeNames={{mail.example.net}}")
    assert (
        "the webmail checks the edge's certificate for edge.imapHost (imap.example.net), "
        "which certificates.acme.edgeNames (mail.example.net) does not list"
    ) in stderr, stderr
    # Not verifying, the webmail does not mind.
    env, _, _ = tls_of(
        helm, ACME, "certificates.acme.edgeNames={mail.example.net}", "webmail.tlsVerify=false"
    )
    assert env == {"VPES_WEBMAIL_TLS_VERIFY": "0"}


def test_without_the_panel_no_password_change_is_offered(helm: str) -> None:
    docs = render(helm, WEBMAIL, "panel.enabled=false")
    [c] = pod_of(docs, "Deployment", "vpes-webmail")["containers"]
    assert "VPES_WEBMAIL_PASSWORD_URL" not in env_of(c)
    egress = one(render(helm, POLICIES, "panel.enabled=false"), "NetworkPolicy", "vpes-webmail")
    assert PANEL_PODS not in [
        peer["podSelector"]["matchLabels"]
        for rule in egress["spec"]["egress"]
        for peer in rule.get("to", [])
        if "podSelector" in peer
    ]


def test_an_ingress_for_the_webmail_urls_host(helm: str) -> None:
    docs = render(
        helm,
        WEBMAIL,
        "webmail.ingress.enabled=true",
        "webmail.ingress.className=nginx",
        "webmail.ingress.tlsSecretName=webmail-tls",
        "edge.webmailUrl=https://mail.example.org:8443/",
    )
    spec = one(docs, "Ingress", "vpes-webmail")["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["mail.example.org"], "secretName": "webmail-tls"}]
    [rule] = spec["rules"]
    assert rule["host"] == "mail.example.org"
    [path] = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert path["backend"]["service"] == {"name": "vpes-webmail", "port": {"name": "http"}}


# -- the database -----------------------------------------------------------------------


def test_the_database_is_a_statefulset_on_its_own_volume(helm: str) -> None:
    docs = render(helm, DB, "webmail.db.storage=5Gi", "webmail.db.storageClassName=fast")
    sts = one(docs, "StatefulSet", "vpes-webmail-db")
    assert sts["spec"]["replicas"] == 1 and sts["spec"]["serviceName"] == "vpes-webmail-db"
    assert sts["spec"]["selector"]["matchLabels"] == DB_PODS
    pod = pod_of(docs, "StatefulSet", "vpes-webmail-db")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 5432
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [c] = pod["containers"]
    assert c["image"] == "localhost/vpes-webmail-db:0.1.0"
    assert c["securityContext"] == LOCKED
    assert c["resources"]["limits"]["memory"]
    assert env_of(c) == {
        "VPES_WEBMAIL_DB_PASSWORD": {"secretKeyRef": {"name": "vpes-webmail", "key": "db-password"}}
    }
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["data"] == "/var/lib/vpes-webmail-db"
    assert mounts["run"] == "/run/vpes-webmail-db"
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert claim["spec"]["storageClassName"] == "fast"
    service = one(docs, "Service", "vpes-webmail-db")
    assert service["spec"]["selector"] == DB_PODS
    assert [p["port"] for p in service["spec"]["ports"]] == [5432]
    default = one(render(helm, DB), "StatefulSet", "vpes-webmail-db")
    [claim] = default["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert "storageClassName" not in claim["spec"]


# -- the panel's internal port ----------------------------------------------------------


def test_the_panel_serves_the_password_change_on_an_internal_service(helm: str) -> None:
    docs = render(helm, "templates/panel-deployment.yaml")
    [c] = pod_of(docs, "Deployment", "vpes-panel")["containers"]
    assert c["command"][-2:] == ["--internal-port", "8081"]
    assert {"name": "internal", "containerPort": 8081} in c["ports"]
    internal = one(docs, "Service", "vpes-panel-internal")
    assert internal["spec"]["ports"] == [
        {"name": "internal", "port": 8081, "targetPort": "internal", "protocol": "TCP"}
    ]
    # The Service an Ingress names has the pages' port only.
    public = one(docs, "Service", "vpes-panel")
    assert [p["targetPort"] for p in public["spec"]["ports"]] == ["http"]


def test_webmail_off_renders_none_of_it(helm: str) -> None:
    docs = render(helm, None, "webmail.enabled=false")
    assert not [d for d in docs if "webmail" in d["metadata"]["name"]]
    assert not [d for d in docs if d["metadata"]["name"] == "vpes-panel-internal"]
    [c] = pod_of(docs, "Deployment", "vpes-panel")["containers"]
    assert "--internal-port" not in c["command"]
    policy = one(docs, "NetworkPolicy", "vpes-panel")
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    config = one(docs, "ConfigMap", "vpes-operator")["data"]
    assert config["VPES_WEBMAIL_URL"] == ""
    on = one(render(helm, "templates/operator-config.yaml"), "ConfigMap", "vpes-operator")
    assert on["data"]["VPES_WEBMAIL_URL"] == "https://webmail.example.net"


# -- network policies -------------------------------------------------------------------


def test_the_webmail_reaches_dns_its_database_the_proxy_and_the_panel_only(helm: str) -> None:
    spec = one(render(helm, POLICIES), "NetworkPolicy", "vpes-webmail")["spec"]
    assert spec["podSelector"]["matchLabels"] == WEBMAIL_PODS
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]
    dns, db, proxy, panel = spec["egress"]
    assert dns["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}
    ]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert db == {
        "to": [{"podSelector": {"matchLabels": DB_PODS}}],
        "ports": [{"protocol": "TCP", "port": 5432}],
    }
    assert proxy["to"] == [{"podSelector": {"matchLabels": PROXY_PODS}}]
    assert panel == {
        "to": [{"podSelector": {"matchLabels": PANEL_PODS}}],
        "ports": [{"protocol": "TCP", "port": 8081}],
    }
    # The proxy's ports allowed are exactly the pod ports its internal Service's 143,
    # 4190 and 587 lead to (policies see pod ports).
    edge = render(helm, "templates/edge-proxy.yaml")
    [container] = pod_of(edge, "Deployment", "vpes-edge-proxy")["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    internal = one(edge, "Service", "vpes-edge-proxy-internal")["spec"]["ports"]
    wanted = {named[p["targetPort"]] for p in internal if p["port"] in (143, 4190, 587)}
    assert {p["port"] for p in proxy["ports"]} == wanted == {20143, 24190, 20587}


def test_the_proxy_and_the_panel_admit_the_webmail(helm: str) -> None:
    policies = render(helm, "templates/networkpolicies.yaml")
    proxy = one(policies, "NetworkPolicy", "vpes-edge-proxy")["spec"]["ingress"]
    twins = [r for r in proxy if {p["port"] for p in r["ports"]} >= {20143, 24190, 20587}]
    # Any pod of the cluster (the webmail's among them), never the internet.
    assert [r["from"] for r in twins] == [[{"namespaceSelector": {}}]]
    panel = one(policies, "NetworkPolicy", "vpes-panel")["spec"]["ingress"]
    assert panel == [
        {"ports": [{"protocol": "TCP", "port": 8080}]},
        {
            "from": [{"podSelector": {"matchLabels": WEBMAIL_PODS}}],
            "ports": [{"protocol": "TCP", "port": 8081}],
        },
    ]


def test_the_database_admits_only_the_webmail_and_reaches_nothing(helm: str) -> None:
    spec = one(render(helm, POLICIES), "NetworkPolicy", "vpes-webmail-db")["spec"]
    assert spec["podSelector"]["matchLabels"] == DB_PODS
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": WEBMAIL_PODS}}],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }
    ]
    assert spec["egress"] == []
    assert render(helm, POLICIES, "networkPolicy.enabled=false") == []


def test_the_edge_pods_mount_none_of_the_webmails_key(helm: str) -> None:
    """A change of webmail-domains alone swaps none of the edge's volumes (the MX and
    the relay reload on any change of theirs)."""
    for template, name, keys in (
        (
            "templates/edge-mx.yaml",
            "vpes-edge-mx",
            {"domains", "recipients", "transport", "access"},
        ),
        ("templates/edge-relay.yaml", "vpes-edge-relay", {"domains", "senders", "limits", "held"}),
        ("templates/edge-proxy.yaml", "vpes-edge-proxy", {"proxy"}),
    ):
        volumes = {
            v["name"]: v for v in pod_of(render(helm, template), "Deployment", name)["volumes"]
        }
        items = volumes["maps"]["configMap"]["items"]
        assert {i["key"] for i in items} == keys | {"version"}, name
        assert all(i["key"] == i["path"] for i in items)


# -- the values schema ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("webmail.resources.limits.memory=null", "missing property 'memory'"),
        ("webmail.db.resources.limits=null", "missing property 'limits'"),
        ("webmail.maxUpload=1000", "minimum"),
        ("webmail.replicas=0", "minimum"),
        ("webmail.productName=<script>", "does not match pattern"),
        ("webmail.tlsVerify=maybe", "value must be 'auto'"),
        ("webmail.tlsCA.configMap=Private_CA", "does not match pattern"),
        ("webmail.db.storage=lots", "does not match pattern"),
        ("webmail.image.digest=latest", "does not match pattern"),
        ("webmail.colour=blue", "colour"),
        ("panel.internalPort=80", "minimum"),
    ],
)
def test_the_schema_refuses(helm: str, setting: str, complaint: str) -> None:
    stderr = refusal(helm, setting)
    assert complaint in stderr and "/" + setting.split(".")[0] in stderr, stderr


def test_the_internal_port_must_differ_from_the_pages(helm: str) -> None:
    stderr = refusal(helm, "panel.internalPort=8080")
    assert "panel.internalPort (8080) must differ from panel.port" in stderr


# -- the dev cluster ------------------------------------------------------------------


def test_the_dev_cluster_runs_the_webmail_only_with_both_images() -> None:
    base = ("localhost/vpes-operator:t", "localhost/vpes-tenant:t", "localhost/vpes-backup:t")
    assert devchart.values(*base)["webmail"] == {"enabled": False}
    assert devchart.values(*base, webmail_image="localhost/vpes-webmail:t")["webmail"] == {
        "enabled": False
    }
    out = devchart.values(
        *base,
        webmail_image="localhost/vpes-webmail:t",
        webmail_db_image="localhost/vpes-webmail-db:t",
    )["webmail"]
    assert out == {
        "enabled": True,
        "replicas": 1,
        "image": {"repository": "localhost/vpes-webmail", "tag": "t", "pullPolicy": "Never"},
        "db": {
            "image": {"repository": "localhost/vpes-webmail-db", "tag": "t", "pullPolicy": "Never"}
        },
    }
