"""A server's own mail host (spec.mailHost): its address records, whether an issued pair
may replace the bootstrap, the copy into the server's Secret, the bootstrap that keeps
out of its way, its Certificate, and CertificateReady when it cannot be served."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from vpes_operator import certstatus, credentials, mailhost
from vpes_operator.builders import mailhost as builder
from vpes_operator.builders.certificates import COMPONENT, certificate_name
from vpes_operator.certs import mailhost as pair
from vpes_operator.certs.orders import Orders
from vpes_operator.conditions import Cond
from vpes_operator.crypto import self_signed_certificate
from vpes_operator.dns import mailhost as dns
from vpes_operator.dns.records import MAIL_HOST, PURPOSES
from vpes_operator.edge.routing import ServerKey
from vpes_operator.models.common import ObjectMeta
from vpes_operator.models.conditions import Reason
from vpes_operator.models.server import PersonalMailServer, PersonalMailServerSpec
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

NOW = dt.datetime.now(dt.UTC)
HOST = "mail.example.org"
KEY = ServerKey("tenant-a", "acme")
SETTINGS = OperatorSettings(
    operator_namespace="vpes-system", cert_manager_issuer_name="letsencrypt"
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def tls_secret(cert: str, key: str) -> dict[str, Any]:
    return {"data": {"tls.crt": b64(cert), "tls.key": b64(key)}}


class FakeKube:
    """Objects by (kind, namespace, name); merge patches of `data` recorded and applied."""

    def __init__(self, objects: dict[tuple[str, str | None, str], dict[str, Any]]) -> None:
        self.objects = objects
        self.patches: list[tuple[str, str, dict[str, Any]]] = []

    def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def merge_patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]:
        self.patches.append((namespace, name, patch))
        obj = self.objects[(kind, namespace, name)]
        obj.setdefault("data", {}).update(patch["data"])
        return obj


# -- the address records -----------------------------------------------------------------


def lb(*entries: dict[str, str]) -> dict[str, Any]:
    return {"status": {"loadBalancer": {"ingress": list(entries)}}}


def test_the_load_balancers_addresses_and_names() -> None:
    got = dns.load_balancer(lb({"ip": "203.0.113.7"}, {"ip": "2001:db8::7"}, {"hostname": "x.elb"}))
    assert got == (["2001:db8::7", "203.0.113.7"], ["x.elb"])
    assert dns.load_balancer(None) == ([], [])
    assert dns.load_balancer({"status": {"loadBalancer": {}}}) == ([], [])


@pytest.mark.parametrize(
    ("ips", "names", "want"),
    [
        (["203.0.113.7"], [], [("A", "203.0.113.7")]),
        (["203.0.113.7", "2001:db8::7"], [], [("A", "203.0.113.7"), ("AAAA", "2001:db8::7")]),
        ([], ["lb-1.elb.example"], [("CNAME", "lb-1.elb.example.")]),
        (["203.0.113.7"], ["lb-1.elb.example"], [("A", "203.0.113.7")]),
        ([], [], []),
    ],
)
def test_records_point_the_mail_host_at_the_load_balancer(
    ips: list[str], names: list[str], want: list[tuple[str, str]]
) -> None:
    recs = dns.records(HOST, ["example.org", "example.net"], ips, names, 300)
    assert [(r.type, r.value) for r in recs] == want
    for r in recs:
        assert (r.name, r.domain, r.kind, r.ttl) == (HOST, "example.org", MAIL_HOST, 300)
        assert not r.shared and r.model().purpose == PURPOSES[MAIL_HOST]


def test_the_record_belongs_to_the_longest_domain_it_is_under() -> None:
    assert dns.owning_domain("imap.eu.example.org", ["example.org", "eu.example.org"]) == (
        "eu.example.org"
    )
    assert dns.owning_domain("example.org", ["example.org"]) == "example.org"
    with pytest.raises(ValueError, match="not in any of"):
        dns.owning_domain("mail.other.org", ["example.org"])


def spec(**extra: Any) -> PersonalMailServerSpec:
    return PersonalMailServerSpec.model_validate(
        {"plan": "pro", "owner": {"email": "o@example.net"}, "domains": ["example.org"], **extra}
    )


def test_the_records_wait_for_the_address_and_need_a_dedicated_plan() -> None:
    service = ("Service", "tenant-a", "acme-public")
    kube = FakeKube({service: lb()})
    with_host = spec(mailHost=HOST)
    got, waiting = dns.for_server(kube, "tenant-a", "acme", with_host, 300, dedicated=True)  # type: ignore[arg-type]
    assert got == [] and waiting is not None and "acme-public" in waiting
    kube.objects[service] = lb({"ip": "203.0.113.7"})
    got, waiting = dns.for_server(kube, "tenant-a", "acme", with_host, 300, dedicated=True)  # type: ignore[arg-type]
    assert [(r.type, r.name, r.value) for r in got] == [("A", HOST, "203.0.113.7")]
    assert waiting is None
    # A shared plan, or no mail host: no records, nothing to wait for.
    assert dns.for_server(kube, "tenant-a", "acme", with_host, 300, dedicated=False) == ([], None)  # type: ignore[arg-type]
    assert dns.for_server(kube, "tenant-a", "acme", spec(), 300, dedicated=True) == ([], None)  # type: ignore[arg-type]


# -- whether a pair may serve the mail host -----------------------------------------------


def test_a_valid_pair_for_the_name_serves_it() -> None:
    cert, key = self_signed_certificate([HOST], 90, NOW - dt.timedelta(days=1))
    assert pair.problem(cert, key, HOST, NOW) is None
    assert pair.serves(cert, key, HOST, NOW)
    assert not pair.serves(cert, key, None, NOW)


def test_pairs_that_must_not_replace_the_bootstrap() -> None:
    cert, key = self_signed_certificate([HOST], 90, NOW - dt.timedelta(days=1))
    other_cert, other_key = self_signed_certificate(["mail.other.org"], 90, NOW)
    old_cert, old_key = self_signed_certificate([HOST], 30, NOW - dt.timedelta(days=31))
    later_cert, later_key = self_signed_certificate([HOST], 90, NOW + dt.timedelta(days=2))
    assert pair.problem(other_cert, other_key, HOST, NOW) == f"the certificate does not name {HOST}"
    assert "not valid now" in str(pair.problem(old_cert, old_key, HOST, NOW))
    assert "not valid now" in str(pair.problem(later_cert, later_key, HOST, NOW))
    assert pair.problem(cert, other_key, HOST, NOW) == "the key is not the certificate's"
    assert pair.problem("garbage", key, HOST, NOW) == "the certificate cannot be read"
    assert pair.problem(cert, "garbage", HOST, NOW) == "the key cannot be read"
    assert pair.problem("", key, HOST, NOW) == "no certificate or no key"


# -- the copy into the server's own Secret ------------------------------------------------


def target() -> tuple[str, str, str]:
    return ("Secret", "tenant-a", "acme-credentials")


def kube_with_bootstrap() -> FakeKube:
    boot_cert, boot_key = self_signed_certificate(["acme.tenant-a.svc", HOST])
    secret = tls_secret(boot_cert, boot_key)
    secret["data"]["passwd"] = b64("alice:{BLF-CRYPT}x")
    return FakeKube({target(): secret})


def test_a_valid_pair_is_copied_once_and_nothing_else_changes() -> None:
    kube = kube_with_bootstrap()
    cert, key = self_signed_certificate([HOST], 90, NOW)
    mail = mailhost.MailHost(KEY, HOST)
    assert mailhost.install(kube, mail, tls_secret(cert, key)) is True  # type: ignore[arg-type]
    [(ns, name, patch)] = kube.patches
    assert (ns, name) == ("tenant-a", "acme-credentials")
    assert patch == {"data": tls_secret(cert, key)["data"]}  # only the pair
    assert kube.objects[target()]["data"]["passwd"] == b64("alice:{BLF-CRYPT}x")
    assert mailhost.install(kube, mail, tls_secret(cert, key)) is False  # already there
    assert len(kube.patches) == 1


@pytest.mark.parametrize("case", ["wrong name", "expired", "key mismatch", "no secret", "empty"])
def test_a_pair_that_cannot_serve_keeps_the_bootstrap(case: str) -> None:
    kube = kube_with_bootstrap()
    good_cert, _ = self_signed_certificate([HOST], 90, NOW)
    source: dict[str, Any] | None = {
        "wrong name": tls_secret(*self_signed_certificate(["mail.other.org"])),
        "expired": tls_secret(*self_signed_certificate([HOST], 30, NOW - dt.timedelta(days=40))),
        "key mismatch": tls_secret(good_cert, self_signed_certificate([HOST])[1]),
        "no secret": None,
        "empty": {"data": {}},
    }[case]
    assert mailhost.install(kube, mailhost.MailHost(KEY, HOST), source) is False  # type: ignore[arg-type]
    assert kube.patches == []


def test_no_copy_before_the_servers_secret_exists() -> None:
    kube = FakeKube({})
    cert, key = self_signed_certificate([HOST], 90, NOW)
    assert mailhost.install(kube, mailhost.MailHost(KEY, HOST), tls_secret(cert, key)) is False  # type: ignore[arg-type]


# -- the bootstrap keeps out of the way ---------------------------------------------------

NAMES = ["acme.tenant-a.svc", "mail.example.org"]  # credentials.tls_names of the spec


def gathered(stored: dict[str, str], host: str | None) -> tuple[str, str]:
    return credentials._certificate(NAMES, stored, NOW, host)


def test_an_installed_pair_stays_to_its_end_not_renewed_as_a_bootstrap() -> None:
    # 20 days left: a bootstrap would be renewed (30 days before), an issuer's pair is not.
    cert, key = self_signed_certificate([HOST], 90, NOW - dt.timedelta(days=70))
    assert gathered({"tls.crt": cert, "tls.key": key}, HOST) == (cert, key)


@pytest.mark.parametrize("case", ["expired", "no mail host any more", "another mail host"])
def test_an_installed_pair_gives_way_to_a_new_bootstrap(case: str) -> None:
    days, host = {
        "expired": (-1, HOST),
        "no mail host any more": (60, None),
        "another mail host": (60, "imap.example.org"),
    }[case]
    start = NOW - dt.timedelta(days=30)
    cert, key = self_signed_certificate([HOST], 30 + days, start)
    new_cert, _ = gathered({"tls.crt": cert, "tls.key": key}, host)
    assert new_cert != cert
    assert credentials.crypto.certificate_names(new_cert) == set(NAMES)


def test_a_bootstrap_naming_the_mail_host_is_still_renewed_as_a_bootstrap() -> None:
    cert, key = self_signed_certificate(NAMES, 40, NOW - dt.timedelta(days=20))  # 20 days left
    assert gathered({"tls.crt": cert, "tls.key": key}, HOST)[0] != cert
    fresh, fresh_key = self_signed_certificate(NAMES, 825, NOW)
    assert gathered({"tls.crt": fresh, "tls.key": fresh_key}, HOST) == (fresh, fresh_key)


# -- the Certificate, and CertificateReady -------------------------------------------------


def test_the_mail_hosts_certificate() -> None:
    obj = builder.certificate("tenant-a", "acme", HOST, SETTINGS)
    name = certificate_name("tenant-a", "acme", 0) + "-mail"
    assert obj["metadata"]["name"] == name == builder.secret_name("tenant-a", "acme")
    assert obj["metadata"]["namespace"] == "vpes-system"
    assert obj["metadata"]["labels"]["vpes.io/component"] == COMPONENT
    assert obj["spec"]["dnsNames"] == [HOST] and obj["spec"]["secretName"] == name
    assert obj["spec"]["secretTemplate"]["labels"] == obj["metadata"]["labels"]
    assert obj["spec"]["issuerRef"]["name"] == "letsencrypt"
    assert len(name) <= 63 and name.startswith("web-")


def server(plan: str, host: str | None) -> PersonalMailServer:
    body: dict[str, Any] = {"plan": plan, "domains": ["example.org"]}
    if host:
        body["mailHost"] = host
    return PersonalMailServer(metadata=ObjectMeta(name="acme", namespace="tenant-a"), spec=body)


def plans() -> FakeKube:
    def plan(dedicated: bool) -> dict[str, Any]:
        return {"spec": {"features": {"dedicatedAddress": dedicated}}}

    return FakeKube(
        {("MailPlan", None, "mh-pro"): plan(True), ("MailPlan", None, "mh-basic"): plan(False)}
    )


def test_a_shared_plan_cannot_serve_a_mail_host() -> None:
    kube = plans()
    mail = mailhost.wanted(kube, server("mh-basic", HOST))  # type: ignore[arg-type]
    assert mail is not None and mail.blocked is not None
    assert (mail.blocked.status, mail.blocked.reason) == (
        False,
        Reason.MAIL_HOST_NEEDS_DEDICATED_ADDRESS,
    )
    assert "features.dedicatedAddress" in mail.blocked.message and HOST in mail.blocked.message
    hosts = mailhost.MailHosts(kube, SETTINGS)  # type: ignore[arg-type]
    assert hosts.certificates(mail) == []  # nothing ordered for it
    good = certstatus.condition([("x", ready())])
    assert hosts.after_cert_manager(mail, good) == mail.blocked
    assert mailhost.wanted(kube, server("mh-basic", None)) is None  # type: ignore[arg-type]
    dedicated = mailhost.wanted(kube, server("mh-pro", HOST))  # type: ignore[arg-type]
    assert dedicated == mailhost.MailHost(KEY, HOST)
    assert [o["spec"]["dnsNames"] for o in hosts.certificates(dedicated)] == [[HOST]]


def ready(names: int = 4) -> certstatus.CertState:
    end = NOW + dt.timedelta(days=60)
    return certstatus.CertState(True, Reason.CERTIFICATE_ISSUED, "", names, end)


def test_http01_cannot_prove_a_mail_host() -> None:
    settings = SETTINGS.model_copy(update={"acme_challenge": "http-01"})
    hosts = mailhost.MailHosts(plans(), settings)  # type: ignore[arg-type]
    orders = Orders(plans(), "vpes-system", lambda: None, 1, 1 / 3)  # type: ignore[arg-type, return-value]
    wanted: set[tuple[str, str]] = set()
    done = (certstatus.condition([("x", ready())]), [("x", ready())])
    cond, states = hosts.acme(orders, mailhost.MailHost(KEY, HOST), {}, wanted, done, "us")
    orders.shutdown()
    assert (cond.status, cond.reason) == (False, Reason.MAIL_HOST_NEEDS_DNS01)
    assert "certificates.acme.challenge" in cond.message
    assert wanted == set() and states == done[1]


def test_the_mail_hosts_certificate_counts_in_certificate_ready() -> None:
    web = [("web-a", ready())]
    issuing = certstatus.CertState(None, Reason.CERTIFICATE_ISSUING, "an order", 1, None)
    cond = mailhost.combine(certstatus.condition(web), web, ("web-a-mail", issuing), "us", "Secret")
    assert (cond.status, cond.reason) == (None, Reason.CERTIFICATE_ISSUING)
    assert "web-a-mail" in cond.message
    both = mailhost.combine(
        certstatus.condition(web), web, ("web-a-mail", ready(1)), "us", "Secret"
    )
    assert both.status is True and "for 5 names" in both.message
    none = Cond(certstatus.CERTIFICATE_READY, False, Reason.NO_DOMAINS_ROUTED, "no domains")
    assert mailhost.combine(none, [], ("web-a-mail", ready(1)), "us", "Secret") == none
