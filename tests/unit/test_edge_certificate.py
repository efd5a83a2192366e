"""The edge's mail names through cert-manager: the Certificate (names, Secret, issuer,
labels), when one is wanted, and what a pass does with its status (the expiry series,
one log line and event per change, the Secret kept when the Certificate goes). The
API server's side is tests/integration/test_edge_certificate.py."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from vpes_operator import metrics
from vpes_operator.builders import certificates as b
from vpes_operator.certstatus import CertState
from vpes_operator.clients.kube import ApiError
from vpes_operator.conditions import Event
from vpes_operator.edgecert import EdgeCertificate, event, wanted
from vpes_operator.models.conditions import Reason
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

S = OperatorSettings(
    operator_namespace="vpes-system",
    cert_manager_issuer_name="letsencrypt",
    cert_manager_issuer_kind="Issuer",
    mx_host="MX.example.net.",
    imap_host="imap.example.net",
    smtp_host="imap.example.net",
)
END = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)
SERIES = "vpes_edge_certificate_expiry_timestamp_seconds"


def test_the_edge_certificate_names_the_edges_hosts_its_secret_and_the_issuer() -> None:
    cert = wanted(S)
    assert cert is not None
    assert (cert["apiVersion"], cert["kind"]) == ("cert-manager.io/v1", "Certificate")
    meta, spec = cert["metadata"], cert["spec"]
    assert (meta["name"], meta["namespace"]) == ("vpes-edge-tls", "vpes-system")
    # The same names the operator's ACME client certifies: normalised, each once.
    assert spec["dnsNames"] == ["mx.example.net", "imap.example.net"]
    assert spec["secretName"] == "vpes-edge-tls"  # the Secret the edge's pods mount
    assert spec["issuerRef"] == {
        "name": "letsencrypt",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    labels = {
        "app.kubernetes.io/part-of": "vpes",
        "app.kubernetes.io/managed-by": "vpes-operator",
        "vpes.io/component": "edge-tls",
    }
    assert meta["labels"] == labels
    # cert-manager labels the Secret as the ACME client does: either path may write it.
    assert spec["secretTemplate"] == {"labels": labels}
    assert "vpes.io/server" not in meta["labels"]  # it belongs to no server


def test_listed_edge_names_and_another_secret_name_are_used() -> None:
    s = S.model_copy(update={"edge_tls_names": ("mail.example.net",), "edge_tls_secret": "tls"})
    cert = wanted(s)
    assert cert is not None
    assert cert["spec"]["dnsNames"] == ["mail.example.net"]
    assert cert["metadata"]["name"] == cert["spec"]["secretName"] == "tls"


@pytest.mark.parametrize(
    "update",
    [
        {"cert_manager_issuer_name": ""},
        {"edge_tls_secret": ""},
        {"mx_host": "", "imap_host": "", "smtp_host": ""},
    ],
)
def test_no_issuer_no_secret_or_no_names_no_certificate(update: dict[str, Any]) -> None:
    assert wanted(S.model_copy(update=update)) is None


def test_the_builder_refuses_what_cannot_be_a_certificate() -> None:
    with pytest.raises(ValueError, match="at least one name"):
        b.edge_certificate([], S)
    with pytest.raises(ValueError, match="at most 100"):
        b.edge_certificate([f"n{i}.example" for i in range(101)], S)


def test_a_failure_warns_with_cert_managers_words_an_issue_is_told_issuing_is_not() -> None:
    failed = CertState(False, "Failed", "acme: CAA forbids", 2, None)
    assert event(failed) == Event(
        "Warning",
        "Failed",
        "cert-manager could not issue the certificate of the edge's 2 mail names: "
        "acme: CAA forbids",
    )
    ok = event(CertState(True, Reason.CERTIFICATE_ISSUED, "", 2, END))
    assert ok is not None and ok.type == "Normal"
    assert ok.message.endswith("valid until 2027-06-01 00:00 UTC")
    assert event(CertState(None, Reason.CERTIFICATE_ISSUING, "ordering", 2, None)) is None


def test_a_refused_certificate_says_who_refused_it() -> None:
    e = event(CertState(False, Reason.APPLY_REJECTED, "denied: no such issuer", 2, None))
    assert e == Event(
        "Warning",
        "ApplyRejected",
        "the API server refused the edge's Certificate: denied: no such issuer",
    )


class FakeKube:
    """Certificates by name, as the API server would keep them (status written by the test)."""

    def __init__(self) -> None:
        self.objs: dict[str, dict[str, Any]] = {}
        self.applied = 0

    def get(self, api: str, kind: str, ns: str | None, name: str) -> dict[str, Any] | None:
        return self.objs.get(name)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.applied += 1
        name = obj["metadata"]["name"]
        have = self.objs.get(name, {"status": {}})
        meta = {**obj["metadata"], "uid": f"uid-{name}", "generation": 1}
        self.objs[name] = {**obj, "metadata": meta, "status": have["status"]}
        return self.objs[name]

    def list(self, api: str, kind: str, ns: str, labels: str) -> list[dict[str, Any]]:
        return list(self.objs.values())

    def delete(self, api: str, kind: str, ns: str, name: str) -> None:
        del self.objs[name]


def issued(kube: FakeKube, name: str) -> None:
    cond = {"type": "Ready", "status": "True", "observedGeneration": 1}
    kube.objs[name]["status"] = {"conditions": [cond], "notAfter": "2027-06-01T00:00:00Z"}


def failed(kube: FakeKube, name: str) -> None:
    cond = {"type": "Issuing", "status": "False", "reason": "Failed", "message": "CAA forbids"}
    kube.objs[name]["status"] = {"conditions": [cond]}


def gauge(secret: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(SERIES, {"secret": secret})


def test_a_pass_applies_reports_each_change_once_and_exports_the_expiry() -> None:
    kube, posted = FakeKube(), []
    edge = EdgeCertificate(kube, S, lambda ref, events: posted.append((ref, events)))  # type: ignore[arg-type]
    edge.publish(installed=True)
    assert list(kube.objs) == ["vpes-edge-tls"] and kube.applied == 1
    assert posted == [] and gauge("vpes-edge-tls") is None  # issuing: nothing to say yet

    failed(kube, "vpes-edge-tls")
    edge.publish(installed=True)
    edge.publish(installed=True)
    assert kube.applied == 1  # unchanged: not applied again
    [(ref, [warning])] = posted  # once, not every pass
    assert ref["kind"] == "Certificate" and ref["metadata"]["uid"] == "uid-vpes-edge-tls"
    assert (warning.type, warning.reason) == ("Warning", "Failed")

    issued(kube, "vpes-edge-tls")
    edge.publish(installed=True)
    assert posted[-1][1][0].type == "Normal"
    assert gauge("vpes-edge-tls") == END.timestamp()

    # Renamed Secret: the old Certificate and series go, the new one is made.
    renamed = EdgeCertificate(kube, S.model_copy(update={"edge_tls_secret": "edge2"}), edge.post)
    renamed.exported = edge.exported
    renamed.publish(installed=True)
    assert list(kube.objs) == ["edge2"]
    assert gauge("vpes-edge-tls") is None


def test_switched_off_or_released_the_certificate_goes_and_so_does_the_series() -> None:
    kube = FakeKube()
    edge = EdgeCertificate(kube, S, lambda ref, events: None)  # type: ignore[arg-type]
    edge.publish(installed=True)
    issued(kube, "vpes-edge-tls")
    edge.publish(installed=True)
    assert gauge("vpes-edge-tls") == END.timestamp()
    edge.settings = S.model_copy(update={"mx_host": "", "imap_host": "", "smtp_host": ""})
    edge.publish(installed=True)
    assert kube.objs == {} and gauge("vpes-edge-tls") is None

    edge.settings = S
    edge.publish(installed=True)
    edge.release(installed=True)  # the operator's own ACME client takes the Secret over
    assert kube.objs == {}
    edge.release(installed=False)  # no CRD: nothing listed, nothing raised


def test_a_refused_apply_is_told_and_the_pass_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Refusing(FakeKube):
        def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
            body = '{"reason": "Invalid", "message": "admission webhook denied the request"}'
            raise ApiError(422, body, "PATCH", "/apis/cert-manager.io/v1/...")

    edge = EdgeCertificate(Refusing(), S, lambda ref, events: None)  # type: ignore[arg-type]
    with caplog.at_level("WARNING", logger="vpes_operator.edgecert"):
        edge.publish(installed=True)
        edge.publish(installed=True)
    [line] = [r.getMessage() for r in caplog.records]  # once, not every pass
    assert "refused the edge's Certificate: admission webhook denied the request" in line
