"""The edge's mail names through cert-manager, with the operator (as the chart's
ServiceAccount) against the real API server and the stand-in Certificate CRD of
test_certificates.py; the test writes the Certificate's status as cert-manager would.

The Certificate of the edge's names appears in the operator's namespace with its
Secret, issuer and labels; a failed issuance is a Warning event on it; an issued one
sets vpes_edge_certificate_expiry_timestamp_seconds; with the edge's names emptied the
Certificate is deleted, its series removed, and its Secret (which the edge's pods
mount) kept; so is the Secret when the operator's own ACME client takes over.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vpes_devcluster.platform import OPERATOR_NAMESPACE, install_platform
from vpes_operator.certs import account
from vpes_operator.clients.kube import Kube

from .certs_support import install_crd, ready, remove_crd, set_status
from .dns_support import free_port, scrape
from .operator_support import OperatorProcess, wait_for

pytestmark = pytest.mark.integration
SOON = 60.0
ISSUER = "test-issuer"
SECRET = "vpes-edge-tls"
CERT_API = "cert-manager.io/v1"
HOSTS = {
    "VPES_MX_HOST": "mx.edge.test",
    "VPES_IMAP_HOST": "imap.edge.test",
    "VPES_SMTP_HOST": "IMAP.edge.test.",  # the same name: certified once
}
ENV = {
    "VPES_OPERATOR_NAMESPACE": OPERATOR_NAMESPACE,
    "VPES_CERT_MANAGER_ISSUER_NAME": ISSUER,
    "VPES_CERT_MANAGER_ISSUER_KIND": "Issuer",
    "VPES_WEB_SERVICE_NAME": "vpes-web",
    "VPES_EDGE_TLS_SECRET": SECRET,
    "VPES_CERTIFICATES_POLL_SECONDS": "1",
    "VPES_CERTIFICATES_CRD_CHECK_SECONDS": "1",
}
LABELS = {
    "app.kubernetes.io/part-of": "vpes",
    "app.kubernetes.io/managed-by": "vpes-operator",
    "vpes.io/component": "edge-tls",
}
SERIES = f'vpes_edge_certificate_expiry_timestamp_seconds{{secret="{SECRET}"}}'


@pytest.fixture(scope="module")
def kubeconfig(cluster: Any) -> Path:
    """The operator's (the chart's RBAC), after the CRDs are installed."""
    return install_platform(cluster)


@pytest.fixture
def crd(api: Kube, kubeconfig: Path) -> Iterator[None]:
    install_crd(api)
    yield
    api.delete(CERT_API, "Certificate", OPERATOR_NAMESPACE, SECRET)
    api.delete("v1", "Secret", OPERATOR_NAMESPACE, SECRET)
    remove_crd(api)


def operator(kubeconfig: Path, tmp_path: Path, port: int, hosts: dict[str, str]) -> OperatorProcess:
    env = {**ENV, **hosts}
    op = OperatorProcess(kubeconfig, tmp_path, env, args=["--metrics-port", str(port)])
    op.start()
    return op


def warnings_on(api: Kube, uid: str) -> list[dict[str, Any]]:
    """The operator's Warning events on the Certificate of that uid."""
    events = api.list("v1", "Event", OPERATOR_NAMESPACE, fields=f"involvedObject.uid={uid}")
    return [
        e
        for e in events
        if e["type"] == "Warning" and (e.get("source") or {}).get("component") == "vpes-operator"
    ]


def test_the_edges_certificate_follows_its_names(
    api: Kube, kubeconfig: Path, crd: None, tmp_path: Path
) -> None:
    port = free_port("127.0.0.1")
    op = operator(kubeconfig, tmp_path, port, HOSTS)
    try:
        cert = wait_for(
            lambda: api.get(CERT_API, "Certificate", OPERATOR_NAMESPACE, SECRET),
            "the edge's Certificate",
            SOON,
        )
        spec = cert["spec"]
        assert spec["dnsNames"] == ["mx.edge.test", "imap.edge.test"]
        assert spec["secretName"] == SECRET
        assert spec["issuerRef"] == {"name": ISSUER, "kind": "Issuer", "group": "cert-manager.io"}
        assert spec["secretTemplate"] == {"labels": LABELS}
        assert cert["metadata"]["labels"] == LABELS

        gen, uid = cert["metadata"]["generation"], cert["metadata"]["uid"]
        failure = "acme: error: 403 :: urn:ietf:params:acme:error:caa :: CAA record forbids"
        set_status(api, SECRET, {"conditions": [ready("False", "Failed", failure, gen)]})
        [event] = wait_for(lambda: warnings_on(api, uid), "a Warning event on it", SOON)
        assert event["reason"] == "Failed"
        assert event["message"] == (
            f"cert-manager could not issue the certificate of the edge's 2 mail names: {failure}"
        )
        assert SERIES not in scrape(port)  # nothing issued: no expiry to export

        set_status(
            api,
            SECRET,
            {
                "conditions": [ready("True", "Ready", "Certificate is up to date", gen)],
                "notAfter": "2027-06-01T00:00:00Z",
            },
        )
        expiry = wait_for(lambda: scrape(port).get(SERIES), SERIES, SOON)
        assert expiry == dt.datetime(2027, 6, 1, tzinfo=dt.UTC).timestamp()
        assert len(warnings_on(api, uid)) == 1, "one event per change, not one per pass"
    finally:
        op.stop()

    # What cert-manager made: the edge's pods mount it, so it outlives the Certificate.
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": OPERATOR_NAMESPACE, "labels": LABELS},
            "type": "Opaque",
            "data": {},
        }
    )
    port = free_port("127.0.0.1")
    op = operator(
        kubeconfig, tmp_path, port, {"VPES_MX_HOST": "", "VPES_IMAP_HOST": "", "VPES_SMTP_HOST": ""}
    )
    try:
        wait_for(
            lambda: api.get(CERT_API, "Certificate", OPERATOR_NAMESPACE, SECRET) is None,
            "the Certificate deleted with the edge's names",
            SOON,
        )
        assert api.get("v1", "Secret", OPERATOR_NAMESPACE, SECRET) is not None, "Secret kept"
        assert SERIES not in scrape(port)
    finally:
        op.stop()


def test_switching_to_the_operators_acme_client_keeps_the_edges_secret(
    api: Kube, kubeconfig: Path, crd: None, tmp_path: Path
) -> None:
    had_account = api.get("v1", "Secret", OPERATOR_NAMESPACE, account.SECRET_NAME) is not None
    op = operator(kubeconfig, tmp_path, free_port("127.0.0.1"), HOSTS)
    try:
        wait_for(
            lambda: api.get(CERT_API, "Certificate", OPERATOR_NAMESPACE, SECRET),
            "the edge's Certificate",
            SOON,
        )
    finally:
        op.stop()
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": OPERATOR_NAMESPACE, "labels": LABELS},
        "type": "Opaque",
        "data": {},
    }
    api.apply(body)  # what cert-manager made
    # No issuer, a CA (one that never answers: the client's orders fail and back off).
    acme = {
        **HOSTS,
        "VPES_CERT_MANAGER_ISSUER_NAME": "",
        "VPES_ACME_DIRECTORY_URL": "https://127.0.0.1:9/directory",
    }
    op = operator(kubeconfig, tmp_path, free_port("127.0.0.1"), acme)
    try:
        wait_for(
            lambda: api.get(CERT_API, "Certificate", OPERATOR_NAMESPACE, SECRET) is None,
            "the Certificate deleted at the switch",
            SOON,
        )
        assert api.get("v1", "Secret", OPERATOR_NAMESPACE, SECRET) is not None, "Secret kept"
    finally:
        op.stop()
        if not had_account:
            api.delete("v1", "Secret", OPERATOR_NAMESPACE, account.SECRET_NAME)
