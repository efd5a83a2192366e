"""The chart's certificates through cert-manager: the values reach the operator's
settings through its ConfigMap (vpes-web's Service and Ingress class included), the
operator may write Certificates and Ingresses in the release's namespace only, and a
bad issuer kind is refused at install. Rendered with `helm template`; the Role runs
against the real API server in test_certificates.py."""

from __future__ import annotations

import pytest
from vpes_operator.settings import OperatorSettings

from .helm_template import NAMESPACE, Doc, one, refusal, render

pytestmark = pytest.mark.integration
CONFIG = "templates/operator-config.yaml"
RBAC = "templates/operator-rbac.yaml"


def settings_of(helm: str, *sets: str) -> OperatorSettings:
    data = one(render(helm, CONFIG, *sets), "ConfigMap", "vpes-operator")["data"]
    return OperatorSettings.from_env(dict(data))


def test_by_default_certificates_are_off_and_vpes_web_is_named(helm: str) -> None:
    s = settings_of(helm)
    assert s.cert_manager_issuer_name == ""
    assert (s.web_service_name, s.web_service_port) == ("vpes-web", 80)
    # The Service the per-server Ingresses route to is the one the chart makes.
    web = render(helm, "templates/web-deployment.yaml")
    service = one(web, "Service", s.web_service_name)
    assert {p["port"] for p in service["spec"]["ports"]} == {s.web_service_port}


def test_the_issuer_and_the_class_reach_the_operator(helm: str) -> None:
    s = settings_of(
        helm,
        "certificates.issuer.name=letsencrypt",
        "certificates.issuer.kind=Issuer",
        "certificates.issuer.group=example.io",
        "certificates.pollSeconds=30",
        "web.ingress.className=nginx",
    )
    assert (s.cert_manager_issuer_name, s.cert_manager_issuer_kind) == ("letsencrypt", "Issuer")
    assert s.cert_manager_issuer_group == "example.io"
    assert s.certificates_poll_seconds == 30
    assert s.web_ingress_class == "nginx"  # web.ingress's class unless said otherwise
    other = settings_of(
        helm, "web.ingress.className=nginx", "certificates.ingressClassName=haproxy"
    )
    assert other.web_ingress_class == "haproxy"


def test_without_vpes_web_there_is_nothing_to_route_to(helm: str) -> None:
    s = settings_of(helm, "certificates.issuer.name=letsencrypt", "web.enabled=false")
    assert s.web_service_name == ""
    # ... but the edge's mail names still get their Certificate: no Ingress, though.
    role = one(render(helm, RBAC, "web.enabled=false"), "Role", "vpes-operator-certificates")
    verbs = {"get", "list", "create", "patch", "delete"}
    assert rules_of(role) == {("cert-manager.io", "certificates"): verbs}
    assert s.edge_tls_secret == "vpes-edge-tls"


def rules_of(role: Doc) -> dict[tuple[str, str], set[str]]:
    return {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_the_operator_writes_certificates_and_ingresses_in_its_own_namespace_only(
    helm: str,
) -> None:
    docs = render(helm, RBAC)
    role = one(docs, "Role", "vpes-operator-certificates")
    assert role["metadata"]["namespace"] == NAMESPACE
    verbs = {"get", "list", "create", "patch", "delete"}
    assert rules_of(role) == {
        ("cert-manager.io", "certificates"): verbs,
        ("networking.k8s.io", "ingresses"): verbs,
    }
    binding = one(docs, "RoleBinding", "vpes-operator-certificates")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "vpes-operator-certificates",
    }
    # Nowhere else: the ClusterRole names neither (it reads the CRD, as kopf needs).
    cluster = rules_of(one(docs, "ClusterRole", "vpes-operator"))
    assert ("cert-manager.io", "certificates") not in cluster
    assert ("networking.k8s.io", "ingresses") not in cluster
    assert "get" in cluster[("apiextensions.k8s.io", "customresourcedefinitions")]


def test_the_acme_client_is_off_by_default_and_its_values_reach_the_operator(helm: str) -> None:
    off = settings_of(helm)
    assert off.acme_directory_url == ""
    assert (off.acme_challenge, off.edge_tls_names) == ("dns-01", ())
    assert off.edge_tls_secret == "vpes-edge-tls"  # the name the edge's pods mount
    s = settings_of(
        helm,
        "certificates.acme.directoryUrl=https://acme.example/directory",
        "certificates.acme.email=hostmaster@example.net",
        "certificates.acme.challenge=http-01",
        "certificates.acme.concurrency=3",
        "certificates.acme.edgeNames={mx.example.net,imap.example.net}",
    )
    assert s.acme_directory_url == "https://acme.example/directory"
    assert (s.acme_email, s.acme_challenge) == ("hostmaster@example.net", "http-01")
    assert (s.acme_concurrency, s.acme_renew_before_fraction) == (3, 0.3333)
    assert s.edge_tls_names == ("mx.example.net", "imap.example.net")


def test_a_private_cas_bundle_is_mounted_from_a_configmap(helm: str) -> None:
    assert settings_of(helm).acme_ca_bundle == ""
    sets = ("certificates.acme.caBundle.configMap=my-ca", "certificates.acme.caBundle.key=root")
    s = settings_of(helm, *sets)
    assert s.acme_ca_bundle == "/etc/vpes/acme-ca/ca.pem"
    pod = one(
        render(helm, "templates/operator-deployment.yaml", *sets), "Deployment", "vpes-operator"
    )
    spec = pod["spec"]["template"]["spec"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "acme-ca"]
    assert volume["configMap"] == {"name": "my-ca", "items": [{"key": "root", "path": "ca.pem"}]}
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["acme-ca"] == "/etc/vpes/acme-ca"


def test_in_its_namespace_the_operator_may_write_its_certificates_secrets_only(
    helm: str,
) -> None:
    policy = one(render(helm, RBAC), "ValidatingAdmissionPolicy", "vpes-operator-scope")
    rule = policy["spec"]["validations"][1]["expression"]
    # The edge's Secret (cert-manager's, from the operator's Certificate, or the ACME
    # client's): the operator may write and delete it by name, whatever its labels.
    assert 'request.name in ["vpes-acme-account","vpes-edge-tls"]' in rule
    other = one(
        render(helm, RBAC, "edge.tls.secretName=edge-cert"),
        "ValidatingAdmissionPolicy",
        "vpes-operator-scope",
    )["spec"]["validations"][1]["expression"]
    assert 'request.name in ["vpes-acme-account","edge-cert"]' in other
    assert 'request.name.startsWith("web-")' in rule
    assert 'object.metadata.labels["vpes.io/component"] == "web-certificate"' in rule


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        (
            "certificates.acme.directoryUrl=http://acme.example/dir",
            "/certificates/acme/directoryUrl",
        ),
        ("certificates.acme.challenge=tls-alpn-01", "/certificates/acme/challenge"),
        ("certificates.acme.concurrency=0", "/certificates/acme/concurrency"),
        ("certificates.issuer.kind=Secret", "/certificates/issuer/kind"),
        ("certificates.issuer.name=Not_A_Name", "/certificates/issuer/name"),
        ("certificates.pollSeconds=0", "/certificates/pollSeconds"),
    ],
)
def test_bad_values_are_refused_with_their_path(helm: str, setting: str, said: str) -> None:
    assert said in refusal(helm, setting)
