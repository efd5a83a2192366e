"""Certificates through cert-manager, with the operator (as the chart's ServiceAccount)
against the real API server: a Certificate CRD of our own stands in for cert-manager's
(the schema is not the point: the objects the operator makes, the status it reads,
and what it deletes are), and the test writes the Certificate's status as
cert-manager would.

Without the CRD: no objects, and CertificateReady says cert-manager is not installed.
With it: a server's Certificate and Ingress appear in the operator's namespace with
its domains' web names; a failed ACME challenge becomes CertificateReady False with
cert-manager's reason and message; an issued certificate CertificateReady True and
the expiry metric; a dropped domain leaves both objects; a deleted server takes them
(and the Secret) with it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vpes_devcluster.platform import OPERATOR_NAMESPACE, install_platform
from vpes_operator import API_VERSION
from vpes_operator.builders import certificates as b
from vpes_operator.clients.kube import Kube
from vpes_operator.settings import OperatorSettings

from .certs_support import install_crd, ready, remove_crd, set_status, spec
from .dns_support import free_port, scrape
from .operator_support import (
    OperatorProcess,
    condition,
    get_server,
    plan_body,
    server_body,
    wait_for,
)

pytestmark = pytest.mark.integration
SOON = 60.0
ISSUER = "test-issuer"
# What the operator runs with (its defaults otherwise): names computed the same way.
SETTINGS = OperatorSettings(
    operator_namespace=OPERATOR_NAMESPACE,
    cert_manager_issuer_name=ISSUER,
    web_service_name="vpes-web",
)
ENV = {
    "VPES_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
    "VPES_CERT_MANAGER_ISSUER_NAME": ISSUER,
    "VPES_WEB_SERVICE_NAME": "vpes-web",
    "VPES_CERTIFICATES_POLL_SECONDS": "1",
    "VPES_CERTIFICATES_CRD_CHECK_SECONDS": "1",
}


@pytest.fixture(scope="module")
def kubeconfig(cluster: Any) -> Path:
    """The operator's (the chart's RBAC), after the CRDs are installed."""
    return install_platform(cluster)


@pytest.fixture
def plan(api: Kube, kubeconfig: Path) -> Iterator[str]:
    name = f"cert-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(name))
    yield name
    api.delete(API_VERSION, "MailPlan", None, name)


def cert_ready(api: Kube, ns: str, name: str, status: str, reason: str = "") -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        c = condition(get_server(api, ns, name), "CertificateReady")
        return c if c and c["status"] == status and (not reason or c["reason"] == reason) else None

    return wait_for(check, f"CertificateReady {status} {reason} on {ns}/{name}", SOON)


def gone(api: Kube, name: str) -> bool:
    """Whether the Certificate, the Ingress and the Secret of that name are all gone."""
    return all(
        api.get(v, k, OPERATOR_NAMESPACE, name) is None
        for v, k in (
            ("cert-manager.io/v1", "Certificate"),
            ("networking.k8s.io/v1", "Ingress"),
            ("v1", "Secret"),
        )
    )


def operator(kubeconfig: Path, tmp_path: Path, port: int) -> OperatorProcess:
    op = OperatorProcess(kubeconfig, tmp_path, ENV, args=["--metrics-port", str(port)])
    op.start()
    return op


def test_without_cert_manager_no_objects_and_the_condition_says_so(
    api: Kube, kubeconfig: Path, namespace: str, plan: str, tmp_path: Path
) -> None:
    remove_crd(api)
    op = operator(kubeconfig, tmp_path, free_port("127.0.0.1"))
    try:
        api.apply(server_body("plain", namespace, spec(plan, [f"plain-{namespace}.test"])))
        c = cert_ready(api, namespace, "plain", "False", "CertManagerNotInstalled")
        assert "cert-manager is not installed" in c["message"]
        ingress = api.get(
            "networking.k8s.io/v1", "Ingress", OPERATOR_NAMESPACE, b.base_name(namespace, "plain")
        )
        assert ingress is None
    finally:
        op.stop()


def test_certificates_follow_the_server(
    api: Kube, kubeconfig: Path, namespace: str, plan: str, tmp_path: Path
) -> None:
    install_crd(api)
    port = free_port("127.0.0.1")
    op = operator(kubeconfig, tmp_path, port)
    one, two = f"one-{namespace}.test", f"two-{namespace}.test"
    name = b.base_name(namespace, "mail")
    try:
        api.apply(server_body("mail", namespace, spec(plan, [one, two])))

        def cert_with(domains: list[str], of: str = name) -> dict[str, Any] | None:
            got = api.get("cert-manager.io/v1", "Certificate", OPERATOR_NAMESPACE, of)
            want = b.web_names(domains, SETTINGS)
            return got if got and got["spec"]["dnsNames"] == want else None

        cert = wait_for(lambda: cert_with([one, two]), "the Certificate of both domains", SOON)
        assert cert["spec"]["secretName"] == name
        assert cert["spec"]["issuerRef"]["name"] == ISSUER
        assert cert["metadata"]["labels"]["vpes.io/server"] == "mail"
        assert cert["metadata"]["labels"]["vpes.io/server-namespace"] == namespace
        ing = api.get("networking.k8s.io/v1", "Ingress", OPERATOR_NAMESPACE, name)
        assert ing is not None
        hosts = [r["host"] for r in ing["spec"]["rules"]]
        assert hosts == b.web_names([one, two], SETTINGS) and len(hosts) == 8
        assert ing["spec"]["tls"] == [{"hosts": hosts, "secretName": name}]
        cert_ready(api, namespace, "mail", "Unknown", "Issuing")

        gen = cert["metadata"]["generation"]
        failure = (
            f"Failed to wait for order resource to become ready: acme: authorization error "
            f"for mta-sts.{one}: 403 urn:ietf:params:acme:error:unauthorized: Invalid response "
            f"from http://mta-sts.{one}/.well-known/acme-challenge/abc: 404"
        )
        set_status(api, name, {"conditions": [ready("False", "Failed", failure, gen)]})
        c = cert_ready(api, namespace, "mail", "False", "Failed")
        assert f"Invalid response from http://mta-sts.{one}" in c["message"]

        set_status(
            api,
            name,
            {
                "conditions": [ready("True", "Ready", "Certificate is up to date", gen)],
                "notAfter": "2027-06-01T00:00:00Z",
            },
        )
        c = cert_ready(api, namespace, "mail", "True", "CertificateIssued")
        assert c["message"] == "certificate for 8 names valid until 2027-06-01 00:00 UTC"
        series = (
            f'vpes_certificate_expiry_timestamp_seconds{{namespace="{namespace}",server="mail"}}'
        )
        expiry = wait_for(lambda: scrape(port).get(series), series, SOON)
        assert expiry == dt.datetime(2027, 6, 1, tzinfo=dt.UTC).timestamp()
        tenant = f'vpes_tenant_certificate_ready{{namespace="{namespace}",server="mail"}}'
        assert wait_for(lambda: scrape(port).get(tenant), tenant, SOON) == 1.0

        api.apply(server_body("mail", namespace, spec(plan, [one])))
        wait_for(lambda: cert_with([one]), "the Certificate without the dropped domain", SOON)

        def ingress_hosts() -> list[str] | None:
            got = api.get("networking.k8s.io/v1", "Ingress", OPERATOR_NAMESPACE, name)
            return [r["host"] for r in got["spec"]["rules"]] if got else None

        wait_for(
            lambda: ingress_hosts() == b.web_names([one], SETTINGS),
            "the Ingress without the dropped domain",
            SOON,
        )
        # The new spec is not issued yet (its Ready is of the previous generation).
        cert_ready(api, namespace, "mail", "Unknown", "Issuing")
        # The dropped domain moves to another server: its names go with it.
        other = b.base_name(namespace, "other")
        api.apply(server_body("other", namespace, spec(plan, [two])))
        wait_for(lambda: cert_with([two], other), "the other server's Certificate", SOON)
        cert_ready(api, namespace, "other", "Unknown", "Issuing")

        api.apply(  # what cert-manager makes: the operator deletes it with the Certificate
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": OPERATOR_NAMESPACE,
                    "labels": cert["spec"]["secretTemplate"]["labels"],
                },
                "type": "Opaque",
                "data": {},
            }
        )
        api.delete(API_VERSION, "PersonalMailServer", namespace, "mail")
        wait_for(
            lambda: gone(api, name), "the Certificate, Ingress and Secret deleted with it", SOON
        )
        assert cert_with([two], other) is not None, "the other server's stay"
        api.delete(API_VERSION, "PersonalMailServer", namespace, "other")
        wait_for(lambda: gone(api, other), "the other server's objects deleted with it", SOON)
        wait_for(lambda: series not in scrape(port), "the expiry series gone", SOON)
    finally:
        op.stop()
        remove_crd(api)
