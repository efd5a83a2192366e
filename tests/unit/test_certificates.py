"""Certificates through cert-manager: the web names of a server's domains, the
Certificates and Ingress made of them (names, caps, labels, IDNA), CertificateReady
from the Certificates' status, and what a pass decides is unchanged."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from vpes_operator import certstatus
from vpes_operator.builders import certificates as b
from vpes_operator.conditions import events
from vpes_operator.models.conditions import Condition, Reason
from vpes_operator.models.server_limits import MAX_DOMAINS
from vpes_operator.settings import OperatorSettings
from vpes_operator.webcerts import differs, within

pytestmark = pytest.mark.unit

S = OperatorSettings(
    operator_namespace="vpes-system",
    cert_manager_issuer_name="letsencrypt",
    web_service_name="vpes-web",
    web_ingress_class="nginx",
)
T = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_web_names_are_the_four_cname_records_of_each_domain() -> None:
    assert b.web_names(["b.example", "a.example"], S) == [
        "autoconfig.a.example",
        "autodiscover.a.example",
        "mta-sts.a.example",
        "openpgpkey.a.example",
        "autoconfig.b.example",
        "autodiscover.b.example",
        "mta-sts.b.example",
        "openpgpkey.b.example",
    ]
    off = S.model_copy(update={"mta_sts_mode": "off"})
    assert "mta-sts.a.example" not in b.web_names(["a.example"], off)
    assert len(b.web_names(["a.example"], off)) == 3


def test_idna_domains_stay_the_a_labels_the_records_use() -> None:
    # münchen.example as the CRD stores it (the panel encodes it once).
    names = b.web_names(["xn--mnchen-3ya.example"], S)
    assert names[0] == "autoconfig.xn--mnchen-3ya.example"
    assert all(n.isascii() and n == n.lower() for n in names)


def test_a_certificate_names_the_issuer_secret_and_rotates_its_key() -> None:
    cert = b.certificate("cust-a", "mail", 0, ["a.example", "b.example"], S)
    assert cert["apiVersion"] == "cert-manager.io/v1" and cert["kind"] == "Certificate"
    meta, spec = cert["metadata"], cert["spec"]
    assert meta["namespace"] == "vpes-system"  # where vpes-web runs, not the server's
    assert "ownerReferences" not in meta
    assert meta["labels"]["vpes.io/server"] == "mail"
    assert meta["labels"]["vpes.io/server-namespace"] == "cust-a"
    assert meta["labels"]["vpes.io/component"] == b.COMPONENT
    assert spec["secretName"] == meta["name"]
    assert spec["dnsNames"] == b.web_names(["a.example", "b.example"], S)
    assert spec["issuerRef"] == {
        "name": "letsencrypt",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert spec["privateKey"] == {"rotationPolicy": "Always"}
    assert spec["secretTemplate"] == {"labels": meta["labels"]}  # so it can be deleted


def test_the_ingress_routes_exactly_those_names_to_vpes_web_with_the_secret() -> None:
    ing = b.ingress("cust-a", "mail", ["a.example"], S)
    assert ing["metadata"]["name"] == b.base_name("cust-a", "mail")
    spec = ing["spec"]
    assert spec["ingressClassName"] == "nginx"
    hosts = b.web_names(["a.example"], S)
    assert spec["tls"] == [{"hosts": hosts, "secretName": b.base_name("cust-a", "mail")}]
    assert [r["host"] for r in spec["rules"]] == hosts
    backend = spec["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": "vpes-web", "port": {"number": 80}}}
    no_class = S.model_copy(update={"web_ingress_class": ""})
    assert "ingressClassName" not in b.ingress("cust-a", "mail", ["a.example"], no_class)["spec"]


@pytest.mark.parametrize(
    ("namespace", "server"),
    [("a", "b"), ("a-b", "c"), ("a", "b-c"), ("n" * 63, "s" * 63), ("cust", "x" * 63)],
)
def test_names_are_bounded_valid_and_distinct(namespace: str, server: str) -> None:
    names = {b.certificate_name(namespace, server, i) for i in range(4)}
    assert len(names) == 4
    for name in names:
        assert len(name) <= 63
        assert name[0].isalnum() and name[-1].isalnum()
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_names_that_split_alike_do_not_collide() -> None:
    assert b.base_name("a-b", "c") != b.base_name("a", "b-c")
    assert b.base_name("a", "b") == b.base_name("a", "b")  # deterministic


def test_the_most_domains_a_server_may_have_never_exceed_100_names_a_certificate() -> None:
    domains = [f"d{i:03}.example" for i in range(MAX_DOMAINS)]
    objs = b.objects("ns", "big", domains, S)
    certs = [o for o in objs if o["kind"] == "Certificate"]
    assert len(certs) == 4 and objs[-1]["kind"] == "Ingress"
    assert all(len(c["spec"]["dnsNames"]) <= b.MAX_NAMES for c in certs)
    every = [n for c in certs for n in c["spec"]["dnsNames"]]
    assert every == b.web_names(domains, S)  # each name once, in order
    assert [c["metadata"]["name"] for c in certs] == [
        b.certificate_name("ns", "big", i) for i in range(4)
    ]
    tls = objs[-1]["spec"]["tls"]
    assert [t["secretName"] for t in tls] == [c["spec"]["secretName"] for c in certs]
    assert len(objs[-1]["spec"]["rules"]) == 4 * MAX_DOMAINS


def test_a_certificate_over_the_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 100"):
        b.certificate("ns", "s", 0, [f"d{i}.example" for i in range(26)], S)


def test_no_domain_no_objects() -> None:
    assert b.objects("ns", "s", [], S) == []


def cert(
    ready: str | None = None,
    issuing: tuple[str, str, str] | None = None,
    reason: str = "Ready",
    message: str = "",
    not_after: str | None = None,
    generation: int = 1,
    observed: int = 1,
) -> dict[str, Any]:
    conditions = []
    if ready is not None:
        conditions.append(
            {
                "type": "Ready",
                "status": ready,
                "reason": reason,
                "message": message,
                "observedGeneration": observed,
            }
        )
    if issuing is not None:
        status, why, said = issuing
        conditions.append({"type": "Issuing", "status": status, "reason": why, "message": said})
    status: dict[str, Any] = {"conditions": conditions}
    if not_after:
        status["notAfter"] = not_after
    return {"metadata": {"generation": generation}, "status": status}


CHALLENGE = (
    "Failed to wait for order resource to become ready: order is in invalid state: "
    "acme: authorization error for mta-sts.a.example: 403 urn:ietf:params:acme:error:"
    "unauthorized: Invalid response from http://mta-sts.a.example/.well-known/acme-challenge/x"
)


@pytest.mark.parametrize(
    ("obj", "status", "reason", "says"),
    [
        (None, "Unknown", Reason.CERTIFICATE_ISSUING, "being made"),
        (cert(), "Unknown", Reason.CERTIFICATE_ISSUING, "waiting for cert-manager"),
        (
            cert("False", ("True", "DoesNotExist", "Issuing certificate as Secret does not exist")),
            "Unknown",
            Reason.CERTIFICATE_ISSUING,
            "Secret does not exist",
        ),
        (cert("False", reason="Failed", message=CHALLENGE), "False", "Failed", "acme: author"),
        (
            cert("False", ("False", "Failed", CHALLENGE), reason="DoesNotExist"),
            "False",
            "Failed",
            "Invalid response from http://mta-sts.a.example",
        ),
        (cert("False", reason="bad reason!", message="x"), "False", "CertificateFailed", "x"),
        (
            cert("True", not_after="2027-03-01T12:00:00Z"),
            "True",
            Reason.CERTIFICATE_ISSUED,
            "certificate for 4 names valid until 2027-03-01 12:00 UTC",
        ),
        # A spec change (a domain added) the Ready condition has not caught up with.
        (cert("True", generation=2, observed=1), "Unknown", Reason.CERTIFICATE_ISSUING, ""),
    ],
)
def test_certificate_ready_from_cert_managers_conditions(
    obj: dict[str, Any] | None, status: str, reason: str, says: str
) -> None:
    cond = certstatus.condition([("c", certstatus.state(obj, 4))])
    assert (cond.status_text, cond.reason) == (status, reason)
    assert says in cond.message


def test_several_certificates_the_worst_one_counts() -> None:
    good = certstatus.state(cert("True", not_after="2027-05-01T00:00:00Z"), 100)
    soon = certstatus.state(cert("True", not_after="2027-04-01T00:00:00Z"), 8)
    bad = certstatus.state(cert("False", reason="Failed", message="rate limited"), 100)
    issuing = certstatus.state(None, 100)
    both = certstatus.condition([("a", good), ("b", soon)])
    assert both.status is True
    assert both.message == "2 certificates for 108 names valid until 2027-04-01 00:00 UTC"
    assert certstatus.expiry([("a", good), ("b", soon)]) == dt.datetime(2027, 4, 1, tzinfo=dt.UTC)
    failed = certstatus.condition([("a", good), ("b", issuing), ("c", bad)])
    assert (failed.status, failed.reason) == (False, "Failed")
    assert failed.message.startswith("Certificate c: ") and "rate limited" in failed.message
    assert certstatus.condition([("a", good), ("b", issuing)]).status is None
    assert certstatus.expiry([("b", issuing)]) is None


def condition(cond: certstatus.Cond) -> Condition:
    return Condition(
        type=cond.type,
        status=cond.status_text,
        reason=cond.reason,
        message=cond.message,
        last_transition_time=T,
    )


def test_events_a_failure_warns_not_configured_and_issuing_do_not() -> None:
    off = condition(certstatus.not_configured("off"))
    issuing = condition(certstatus.condition([("c", certstatus.state(None, 4))]))
    failed = condition(
        certstatus.condition([("c", certstatus.state(cert("False", reason="Failed"), 4))])
    )
    missing = condition(certstatus.not_installed())
    assert [e.type for e in events([], [off])] == ["Normal"]
    assert [e.type for e in events([], [issuing])] == ["Normal"]
    assert [e.type for e in events([issuing], [failed])] == ["Warning"]
    assert [e.type for e in events([], [missing])] == ["Warning"]
    assert "CertificateReady=Unknown" in events([], [issuing])[0].message


def test_unchanged_objects_are_not_applied_again() -> None:
    want = b.certificate("ns", "s", 0, ["a.example"], S)
    live = {**want, "metadata": {**want["metadata"], "uid": "u", "resourceVersion": "7"}}
    live["spec"] = {**want["spec"], "duration": "2160h0m0s"}  # added by someone else: fine
    assert not differs(want, live)
    assert differs(want, None)
    moved = {**live, "spec": {**live["spec"], "dnsNames": ["autoconfig.b.example"]}}
    assert differs(want, moved)
    relabelled = {**live, "metadata": {**live["metadata"], "labels": {}}}
    assert differs(want, relabelled)
    assert within({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2, "c": 3}], "d": 4})
    assert not within({"a": [1]}, {"a": [1, 2]})


@pytest.mark.parametrize(
    ("cond", "gauge"),
    [
        (certstatus.condition([("c", certstatus.state(cert("True"), 4))]), 1.0),
        (certstatus.condition([("c", certstatus.state(cert("False", reason="Failed"), 4))]), 0.0),
        (certstatus.not_installed(), 0.0),
        (certstatus.condition([("c", certstatus.state(None, 4))]), None),  # Unknown
        (certstatus.not_configured("off"), None),  # no alert where nobody asked for them
    ],
)
def test_the_certificate_ready_gauge(cond: certstatus.Cond, gauge: float | None) -> None:
    from vpes_operator.metrics import summary
    from vpes_operator.models.server import PersonalMailServer

    server = PersonalMailServer.model_validate(
        {
            "metadata": {"name": "s", "namespace": "n", "uid": "u"},
            "spec": {"plan": "p"},
            "status": {"conditions": [condition(cond).wire()]},
        }
    )
    got = summary(server).certificate_ready
    assert got == (None if gauge is None else gauge == 1.0)


def test_a_refused_apply_says_so_on_that_server() -> None:
    cond = certstatus.rejected('admission webhook "x" denied the request: no wildcard')
    assert (cond.status, cond.reason) == (False, Reason.APPLY_REJECTED)
    assert cond.message.endswith("denied the request: no wildcard")


def test_without_vpes_web_only_certificates_are_listed() -> None:
    """The chart grants Ingresses only with web.enabled: a pass without vpes-web (which
    sweeps the web Certificates) must not ask for them, or it fails every time."""
    from vpes_operator.webcerts import Publisher

    class Lists:
        def __init__(self) -> None:
            self.kinds: list[str] = []

        def list(self, api: str, kind: str, ns: str, labels: str) -> list[Any]:
            self.kinds.append(kind)
            return []

    for web, kinds in (("vpes-web", ["Certificate", "Ingress"]), ("", ["Certificate"])):
        kube = Lists()
        settings = S.model_copy(update={"web_service_name": web})
        Publisher(kube, settings, lambda ref, events: None).found()  # type: ignore[arg-type]
        assert kube.kinds == kinds
