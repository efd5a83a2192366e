"""A customer's own mail host (spec.mailHost) certified, with the operator (as the chart's
ServiceAccount, under its admission policy) against the real API server.

- The operator's own ACME client, with a real CA (Pebble) validating DNS-01 at a real
  DNS server (Knot): a server on a dedicated-address plan gets a certificate for its
  mail host, and its own Secret's tls.crt becomes it (Pebble's chain, the mail host as
  its only name) in place of the self-signed bootstrap, and stays after a reconcile;
  CertificateReady covers it. The same mail host on a shared plan gives
  MailHostNeedsDedicatedAddress and nothing ordered.
- cert-manager (a Certificate CRD of the tests' own, the status and Secret written as
  cert-manager would): a Certificate for the mail host appears; a pair for another name
  in its Secret is not copied, the right one is.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from vpes_devcluster.platform import OPERATOR_NAMESPACE, install_platform
from vpes_operator import API_VERSION
from vpes_operator.builders import mailhost as b
from vpes_operator.clients.kube import Kube
from vpes_operator.crypto import self_signed_certificate

from .acme_support import PebbleServer
from .certs_support import install_crd, remove_crd, spec
from .dns_support import ZONE, KnotServer
from .operator_support import (
    OperatorProcess,
    condition,
    get_server,
    plan_body,
    server_body,
    wait_for,
)
from .test_acme_certificates import env

pytestmark = pytest.mark.integration
SOON = 120.0


@pytest.fixture(scope="module")
def kubeconfig(cluster: Any) -> Path:
    return install_platform(cluster)


@pytest.fixture
def plans(api: Kube, kubeconfig: Path) -> Iterator[tuple[str, str]]:
    """A plan with a dedicated address, and one without."""
    tag = uuid.uuid4().hex[:6]
    dedicated, shared = f"mh-own-{tag}", f"mh-shared-{tag}"
    api.apply(plan_body(dedicated, features={"dedicatedAddress": True}))
    api.apply(plan_body(shared))
    yield dedicated, shared
    for name in (dedicated, shared):
        api.delete(API_VERSION, "MailPlan", None, name)


def cert_ready(api: Kube, ns: str, name: str, status: str, reason: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        c = condition(get_server(api, ns, name), "CertificateReady")
        return c if c and c["status"] == status and c["reason"] == reason else None

    return wait_for(check, f"CertificateReady {status} {reason} on {name}", SOON)


def served_pair(api: Kube, ns: str, name: str) -> tuple[bytes, bytes]:
    """The tls.crt and tls.key of the server's own Secret (what its pod mounts)."""
    data = (api.get("v1", "Secret", ns, f"{name}-credentials") or {}).get("data") or {}
    return base64.b64decode(data.get("tls.crt", "")), base64.b64decode(data.get("tls.key", ""))


def sans(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(ext.get_values_for_type(x509.DNSName))


def with_host(plan: str, domain: str, host: str) -> dict[str, Any]:
    return {**spec(plan, [domain]), "mailHost": host}


def test_acme_certifies_the_mail_host_into_the_servers_own_secret(
    api: Kube,
    kubeconfig: Path,
    namespace: str,
    plans: tuple[str, str],
    pebble: PebbleServer,
    knot: KnotServer,
    tmp_path: Path,
) -> None:
    dedicated, shared = plans
    domain = f"own-{namespace}.{ZONE}"
    host = f"mail.{domain}"
    op = OperatorProcess(
        kubeconfig, tmp_path, env(pebble.directory_url, pebble, knot, tmp_path, f"mx.{ZONE}")
    )
    op.start()
    try:
        api.apply(server_body("mail", namespace, with_host(dedicated, domain, host)))
        wait_for(lambda: served_pair(api, namespace, "mail")[0] or None, "the bootstrap")

        def installed() -> list[x509.Certificate] | None:
            pem = served_pair(api, namespace, "mail")[0]
            chain = x509.load_pem_x509_certificates(pem) if pem else []
            return chain if chain and sans(chain[0]) == [host] else None

        chain = wait_for(installed, "the mail host's certificate in the server's Secret", SOON)
        verifier = PolicyBuilder().store(Store([pebble.root()]))
        verifier.build_server_verifier(x509.DNSName(host)).verify(chain[0], chain[1:])
        c = cert_ready(api, namespace, "mail", "True", "CertificateIssued")
        assert c["message"].startswith("2 certificates for 5 names valid until ")
        issued = api.get("v1", "Secret", OPERATOR_NAMESPACE, b.secret_name(namespace, "mail"))
        assert issued is not None
        assert served_pair(api, namespace, "mail") == tuple(
            base64.b64decode(issued["data"][k]) for k in ("tls.crt", "tls.key")
        )
        # A reconcile (a mailbox added) keeps the issued pair: no new bootstrap over it.
        body = with_host(dedicated, domain, host)
        body["mailboxes"].append({"address": f"b@{domain}"})
        api.apply(server_body("mail", namespace, body))
        wait_for(
            lambda: (
                "b@"
                in base64.b64decode(
                    (api.get("v1", "Secret", namespace, "mail-credentials") or {})
                    .get("data", {})
                    .get("password-hashes.json", "")
                ).decode()
            ),
            "the reconcile of the new mailbox",
            SOON,
        )
        assert installed() is not None, "a reconcile put a bootstrap over the issued pair"
        # The same mail host on a shared plan: a condition that says what to fix.
        other = f"shared-{namespace}.{ZONE}"
        api.apply(server_body("shared", namespace, with_host(shared, other, f"mail.{other}")))
        c = cert_ready(api, namespace, "shared", "False", "MailHostNeedsDedicatedAddress")
        assert "features.dedicatedAddress" in c["message"] and f"mail.{other}" in c["message"]
        assert (
            api.get("v1", "Secret", OPERATOR_NAMESPACE, b.secret_name(namespace, "shared")) is None
        )
    finally:
        op.stop()
        for name in ("mail", "shared"):
            api.delete(API_VERSION, "PersonalMailServer", namespace, name)
        api.delete("v1", "Secret", OPERATOR_NAMESPACE, "vpes-edge-tls")


ISSUER = "test-issuer"
CM_ENV = {
    "VPES_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
    "VPES_CERT_MANAGER_ISSUER_NAME": ISSUER,
    "VPES_WEB_SERVICE_NAME": "vpes-web",
    "VPES_CERTIFICATES_POLL_SECONDS": "1",
    "VPES_CERTIFICATES_CRD_CHECK_SECONDS": "1",
}


def write_secret(api: Kube, name: str, cert: str, key: str, labels: dict[str, str]) -> None:
    """The Secret as cert-manager writes it for a Certificate."""
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE, "labels": labels},
            "stringData": {"tls.crt": cert, "tls.key": key},
        }
    )


def set_ready(api: Kube, name: str, generation: int, not_after: dt.datetime) -> None:
    path = api.resource("cert-manager.io/v1", "Certificate").path(OPERATOR_NAMESPACE, name)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "Certificate is up to date and has not expired",
        "lastTransitionTime": now,
        "observedGeneration": generation,
    }
    status = {"conditions": [ready], "notAfter": not_after.strftime("%Y-%m-%dT%H:%M:%SZ")}
    api.request(
        "PATCH",
        path + "/status",
        body={"status": status},
        content_type="application/merge-patch+json",
    )


def test_cert_manager_certifies_the_mail_host_and_the_copy_follows(
    api: Kube, kubeconfig: Path, namespace: str, plans: tuple[str, str], tmp_path: Path
) -> None:
    dedicated, _ = plans
    domain = f"cm-{namespace}.test"
    host = f"mail.{domain}"
    name = b.secret_name(namespace, "mail")
    install_crd(api)
    op = OperatorProcess(kubeconfig, tmp_path, CM_ENV)
    op.start()
    try:
        api.apply(server_body("mail", namespace, with_host(dedicated, domain, host)))
        cert = wait_for(
            lambda: api.get("cert-manager.io/v1", "Certificate", OPERATOR_NAMESPACE, name),
            "the mail host's Certificate",
            SOON,
        )
        assert cert["spec"]["dnsNames"] == [host] and cert["spec"]["secretName"] == name
        assert cert["spec"]["issuerRef"]["name"] == ISSUER
        labels = cert["spec"]["secretTemplate"]["labels"]
        boot = wait_for(lambda: served_pair(api, namespace, "mail")[0] or None, "the bootstrap")
        # A pair for another name is not copied: the bootstrap stays.
        write_secret(api, name, *self_signed_certificate(["mail.other.test"]), labels)
        set_ready(api, name, cert["metadata"]["generation"], dt.datetime.now(dt.UTC))
        said = (
            f"the certificate for {host} is not installed in {namespace}/mail: "
            f"the certificate does not name {host}"
        )
        wait_for(lambda: said in op.log_text(), "the refusal in the log", SOON)
        assert served_pair(api, namespace, "mail")[0] == boot
        # The right pair is.
        good_cert, good_key = self_signed_certificate([host], 90)
        write_secret(api, name, good_cert, good_key, labels)
        end = dt.datetime.now(dt.UTC) + dt.timedelta(days=90)
        set_ready(api, name, cert["metadata"]["generation"], end)
        wait_for(
            lambda: served_pair(api, namespace, "mail") == (good_cert.encode(), good_key.encode()),
            "the mail host's pair in the server's Secret",
            SOON,
        )
    finally:
        op.stop()
        api.delete(API_VERSION, "PersonalMailServer", namespace, "mail")
        remove_crd(api)
