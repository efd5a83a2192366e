"""The operator's own ACME client wired in, where cert-manager is not used: the operator
(as the chart's ServiceAccount, under its admission policy) against the real API
server, a real CA (Pebble) and a real DNS server (Knot) for DNS-01.

A server with a routed domain gets a kubernetes.io/tls Secret whose certificate covers
its web names (and the edge its own Secret of its mail names), the Ingress to vpes-web
with it, CertificateReady True and the expiry metric; a restarted operator orders
nothing new; with the CA down, a changed domain list gives CertificateReady False
(CAUnreachable) and the certificate already there stays.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from vpes_devcluster.platform import OPERATOR_NAMESPACE, install_platform
from vpes_operator import API_VERSION
from vpes_operator.builders import certificates as b
from vpes_operator.clients.kube import Kube
from vpes_operator.settings import OperatorSettings

from .acme_support import HOST, PebbleServer
from .certs_support import install_crd, remove_crd, spec
from .dns_support import KEY_NAME, ZONE, KnotServer, free_port, scrape
from .operator_support import (
    OperatorProcess,
    condition,
    get_server,
    plan_body,
    server_body,
    wait_for,
)

pytestmark = pytest.mark.integration
SOON = 120.0
SETTINGS = OperatorSettings(operator_namespace=OPERATOR_NAMESPACE, web_service_name="vpes-web")
EDGE_SECRET = "vpes-edge-tls"


@pytest.fixture(scope="module")
def kubeconfig(cluster: Any) -> Path:
    return install_platform(cluster)


@pytest.fixture
def plan(api: Kube, kubeconfig: Path) -> Iterator[str]:
    name = f"acme-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(name))
    yield name
    api.delete(API_VERSION, "MailPlan", None, name)


def env(
    directory_url: str, pebble: PebbleServer, knot: KnotServer, tmp: Path, edge: str
) -> dict[str, str]:
    tsig = tmp / "tsig"
    tsig.write_text(knot.secret)
    return {
        "VPES_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
        "VPES_WEB_SERVICE_NAME": "vpes-web",
        "VPES_CERTIFICATES_POLL_SECONDS": "1",
        "VPES_ACME_DIRECTORY_URL": directory_url,
        "VPES_ACME_CA_BUNDLE": str(pebble.ca_bundle),
        "VPES_ACME_EMAIL": f"hostmaster@{ZONE}",
        "VPES_DNS_DEFAULT_PROVIDER": "rfc2136",
        "VPES_DNS_RFC2136_SERVER": knot.address,
        "VPES_DNS_RFC2136_TSIG_NAME": KEY_NAME,
        "VPES_DNS_RFC2136_TSIG_SECRET_FILE": str(tsig),
        "VPES_EDGE_TLS_NAMES": edge,
    }


def cert_ready(api: Kube, ns: str, status: str, reason: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        c = condition(get_server(api, ns, "mail"), "CertificateReady")
        return c if c and c["status"] == status and c["reason"] == reason else None

    return wait_for(check, f"CertificateReady {status} {reason}", SOON)


def leaf_of(secret: dict[str, Any]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(base64.b64decode(secret["data"]["tls.crt"]))


def sans(cert: x509.Certificate) -> list[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(ext.get_values_for_type(x509.DNSName))


def secret(api: Kube, name: str) -> dict[str, Any] | None:
    return api.get("v1", "Secret", OPERATOR_NAMESPACE, name)


def metric(port: int, series: str) -> float | None:
    """A series of the operator's /metrics (None: not there, or not serving yet)."""
    try:
        return scrape(port).get(series)
    except OSError:
        return None


def orders_in(op: OperatorProcess, name: str) -> int:
    """How many orders the operator's log says it started for the Secret `name`."""
    said = rf"ordering a certificate for \d+ names \(\w+\) for Secret {re.escape(name)}(?![-\w])"
    return len(re.findall(said, op.log_text()))


def check_issued(api: Kube, pebble: PebbleServer, name: str, domain: str) -> dict[str, Any]:
    """The server's Secret, Ingress and certificate as they must be once issued."""
    got = wait_for(lambda: secret(api, name), f"the Secret {name}", SOON)
    assert got["type"] == "kubernetes.io/tls" and set(got["data"]) == {"tls.crt", "tls.key"}
    assert got["metadata"]["labels"]["vpes.io/component"] == "web-certificate"
    chain = leaf_of(got)
    want = b.web_names([domain], SETTINGS)
    assert sans(chain[0]) == sorted(want) and len(want) == 4
    verifier = PolicyBuilder().store(Store([pebble.root()]))
    verifier.build_server_verifier(x509.DNSName(want[0])).verify(chain[0], chain[1:])
    ingress = api.get("networking.k8s.io/v1", "Ingress", OPERATOR_NAMESPACE, name)
    assert ingress is not None
    assert ingress["spec"]["tls"] == [{"hosts": want, "secretName": name}]
    return got


def test_the_operator_certifies_a_server_once_and_keeps_it_when_the_ca_is_down(
    api: Kube,
    kubeconfig: Path,
    namespace: str,
    plan: str,
    pebble: PebbleServer,
    knot: KnotServer,
    tmp_path: Path,
) -> None:
    one, two = f"one-{namespace}.{ZONE}", f"two-{namespace}.{ZONE}"
    edge = f"mx-{namespace}.{ZONE}"
    name = b.certificate_name(namespace, "mail", 0)
    port = free_port("127.0.0.1")
    good = env(pebble.directory_url, pebble, knot, tmp_path, edge)
    op = OperatorProcess(kubeconfig, tmp_path / "ok", good, ["--metrics-port", str(port)])
    op.start()
    try:
        api.apply(server_body("mail", namespace, spec(plan, [one])))
        c = cert_ready(api, namespace, "True", "CertificateIssued")
        assert c["message"].startswith("certificate for 4 names valid until ")
        issued = check_issued(api, pebble, name, one)
        end = leaf_of(issued)[0].not_valid_after_utc
        series = (
            f'vpes_certificate_expiry_timestamp_seconds{{namespace="{namespace}",server="mail"}}'
        )
        assert wait_for(lambda: metric(port, series), series, SOON) == end.timestamp()
        edge_secret = wait_for(lambda: secret(api, EDGE_SECRET), "the edge's Secret", SOON)
        assert sans(leaf_of(edge_secret)[0]) == [edge]
        # Passes go on every second: nothing is ordered again.
        time.sleep(3)  # a negative: three passes' time, then count
        assert orders_in(op, name) == 1 and orders_in(op, EDGE_SECRET) == 1
        op.stop()
        op.start()  # a restart reads the Secrets, and orders nothing
        wait_for(lambda: metric(port, series), "a pass of the restarted operator", SOON)
        assert orders_in(op, name) == 1, "ordered again after a restart"
        op.stop()
        check_ca_down(api, kubeconfig, namespace, plan, tmp_path, [one, two], issued, good)
    finally:
        op.stop()
        api.delete(API_VERSION, "PersonalMailServer", namespace, "mail")
        api.delete("v1", "Secret", OPERATOR_NAMESPACE, EDGE_SECRET)


def check_ca_down(
    api: Kube,
    kubeconfig: Path,
    namespace: str,
    plan: str,
    tmp_path: Path,
    domains: list[str],
    issued: dict[str, Any],
    good: dict[str, str],
) -> None:
    """With the CA down, new names fail with a clear reason; what is there stays."""
    down = f"https://{HOST}:{free_port(HOST)}/dir"
    op = OperatorProcess(kubeconfig, tmp_path / "down", {**good, "VPES_ACME_DIRECTORY_URL": down})
    op.start()
    name = issued["metadata"]["name"]
    try:
        api.apply(server_body("mail", namespace, spec(plan, domains)))
        c = cert_ready(api, namespace, "False", "CAUnreachable")
        assert f"the CA {down} cannot be reached" in c["message"]
        assert "VPES_ACME_DIRECTORY_URL" in c["message"]
        kept = secret(api, name)
        assert kept is not None and kept["data"] == issued["data"], "the certificate stays"
        hosts = wait_for(
            lambda: (
                (api.get("networking.k8s.io/v1", "Ingress", OPERATOR_NAMESPACE, name) or {})
                .get("spec", {})
                .get("rules")
            ),
            "the Ingress",
            SOON,
        )
        assert len(hosts) == 8
        api.delete(API_VERSION, "PersonalMailServer", namespace, "mail")
        wait_for(lambda: secret(api, name) is None, "the Secret deleted with its server", SOON)
    finally:
        op.stop()


def test_certificates_cert_manager_left_go_when_the_acme_client_takes_over(
    api: Kube, kubeconfig: Path, pebble: PebbleServer, knot: KnotServer, tmp_path: Path
) -> None:
    """cert-manager installed, but no issuer configured: the operator's client certifies,
    and a Certificate of ours made before (it would fight over the Secret) is deleted."""
    install_crd(api)
    leftover = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {
            "name": "web-leftover",
            "namespace": OPERATOR_NAMESPACE,
            "labels": b.labels("gone", "gone"),
        },
        "spec": {"secretName": "web-leftover", "dnsNames": ["autoconfig.gone.test"]},
    }
    api.apply(leftover)
    good = env(pebble.directory_url, pebble, knot, tmp_path, f"mx-left.{ZONE}")
    op = OperatorProcess(kubeconfig, tmp_path / "ops", good)
    op.start()
    try:
        wait_for(
            lambda: (
                api.get("cert-manager.io/v1", "Certificate", OPERATOR_NAMESPACE, "web-leftover")
                is None
            ),
            "the leftover Certificate deleted",
            SOON,
        )
    finally:
        op.stop()
        api.delete("v1", "Secret", OPERATOR_NAMESPACE, EDGE_SECRET)
        remove_crd(api)
