"""DNS end to end: the operator publishes through RFC 2136 + TSIG into a real Knot DNS
server, verifies live, reports faults as conditions and removes only its own records."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vpes_operator import API_VERSION, crypto
from vpes_operator.clients.kube import Kube
from vpes_operator.dns import verify
from vpes_operator.settings import OperatorSettings

from .dns_support import (
    BLOCKLIST,
    KEY_NAME,
    LISTED,
    SIGNED_ZONE,
    ZONE,
    KnotServer,
    free_port,
    scrape,
)
from .operator_support import (
    SECRET_VALUES,
    OperatorProcess,
    condition,
    get_server,
    harvest_secrets,
    install_platform,
    plan_body,
    server_body,
    wait_for,
)

TLSA = "3 1 1 " + "ab" * 32
MX_HOST = f"mx.{ZONE}"
PMS = "PersonalMailServer"


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    server = KnotServer(tmp_path_factory.mktemp("knot"))
    server.start()
    SECRET_VALUES.add(server.secret)  # the TSIG secret never appears in an operator log
    yield server
    server.stop()


def dns_env(knot: KnotServer, secret_file: Path) -> dict[str, str]:
    return {
        "VPES_DNS_DEFAULT_PROVIDER": "rfc2136",
        "VPES_DNS_RFC2136_SERVER": knot.address,
        "VPES_DNS_RFC2136_TSIG_NAME": KEY_NAME,
        "VPES_DNS_RFC2136_TSIG_SECRET_FILE": str(secret_file),
        "VPES_DNS_RESOLVERS": knot.address,
        "VPES_DNS_TTL": "300",
        "VPES_MX_HOST": MX_HOST,
        "VPES_OUTBOUND_ADDRESSES": "192.0.2.25,2001:db8::25",
        "VPES_DMARC_RUA": "dmarc@vpes-dns.test",
        "VPES_TLS_RPT_RUA": "tls@vpes-dns.test",
        "VPES_DANE_TLSA": TLSA,
        "VPES_DNS_VERIFY_TICK": "1",
        "VPES_DKIM_ED25519": "true",
        "VPES_DNS_VERIFY_MIN_INTERVAL": "1",
        "VPES_DNS_VERIFY_MAX_INTERVAL": "4",
    }


@pytest.fixture(scope="module")
def secret_file(knot: KnotServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tsig") / "secret"
    path.write_text(knot.secret)
    return path


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port("127.0.0.1")


@pytest.fixture(scope="module")
def operator(
    cluster: Any,
    knot: KnotServer,
    secret_file: Path,
    metrics_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    kubeconfig = install_platform(cluster)
    op = OperatorProcess(
        kubeconfig,
        tmp_path_factory.mktemp("operator-dns"),
        dns_env(knot, secret_file),
        args=["--metrics-port", str(metrics_port)],
    )
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def plan(api: Kube) -> Iterator[str]:
    name = f"dns-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(name))
    yield name
    api.delete(API_VERSION, "MailPlan", None, name)


def spec(plan: str, *domains: str, **dns: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": list(domains),
        "mailboxes": [{"address": f"alice@{domains[0]}"}],
    }
    if dns:
        out["dns"] = dns
    return out


def wait_condition(
    api: Kube, namespace: str, name: str, type_: str, status: str, reason: str | None = None
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get_server(api, namespace, name)
        c = condition(obj, type_)
        if c and c["status"] == status and (reason is None or c["reason"] == reason):
            return obj
        return None

    return wait_for(check, f"{type_}={status} {reason or ''} on {name}", timeout=90)


def events_of(api: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Kubernetes events about the PersonalMailServer `name`."""
    found = api.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/events",
        query={"fieldSelector": f"involvedObject.name={name}"},
    )
    return [e for e in found.get("items", []) if e["involvedObject"]["kind"] == PMS]


def wait_event(api: Kube, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        return next((e for e in events_of(api, namespace, name) if e["reason"] == reason), None)

    return wait_for(check, f"an event {reason} on {name}", timeout=30)


def restarted(operator: OperatorProcess, **env: str) -> dict[str, str | None]:
    """Restart the operator with `env` changed; the old values, to restore with `restarted`."""
    operator.stop()
    old = {k: operator.env.get(k) for k in env}
    operator.env.update(env)
    operator.start()
    return old


def restore(operator: OperatorProcess, old: dict[str, str | None]) -> None:
    operator.stop()
    for k, v in old.items():
        if v is None:
            operator.env.pop(k, None)
        else:
            operator.env[k] = v
    operator.start()


def test_published_and_verified(
    api: Kube, operator: OperatorProcess, knot: KnotServer, namespace: str, plan: str
) -> None:
    d = f"acme.{ZONE}"
    api.apply(server_body("acme", namespace, spec(plan, d)))
    obj = wait_condition(api, namespace, "acme", "DNSVerified", "True")
    published = condition(obj, "DNSPublished")
    assert published and published["status"] == "True", published
    records = obj["status"]["dnsRecords"]
    kinds = {(r["type"], r["name"]) for r in records}
    for want in [
        ("MX", d),
        ("TXT", d),
        ("TXT", f"vpes._domainkey.{d}"),
        ("TXT", f"vpes-ed25519._domainkey.{d}"),
        ("TXT", f"_dmarc.{d}"),
        ("TXT", f"_mta-sts.{d}"),
        ("TXT", f"_smtp._tls.{d}"),
        ("SRV", f"_submissions._tcp.{d}"),
        ("SRV", f"_imaps._tcp.{d}"),
        ("SRV", f"_pop3s._tcp.{d}"),
        ("CNAME", f"autoconfig.{d}"),
        ("CNAME", f"autodiscover.{d}"),
        ("CNAME", f"openpgpkey.{d}"),
    ]:
        assert want in kinds, want
    assert not any(r["type"] == "TLSA" for r in records), "the zone is not signed"
    assert all(r["check"] == "Pass" for r in records), records
    assert knot.query(d, "MX") == [f"10 {MX_HOST}."]
    assert knot.query(d, "TXT") == ["v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 -all"]
    # The DKIM record is the public half of the key the server signs with.
    creds = api.get("v1", "Secret", namespace, "acme-credentials")
    assert creds is not None
    pem = base64.b64decode(creds["data"][f"dkim-{d}.key"]).decode()
    assert knot.query(f"vpes._domainkey.{d}", "TXT") == [crypto.dkim_public_record(pem)]
    ed = base64.b64decode(creds["data"][f"dkim-ed25519-{d}.key"]).decode()
    assert knot.query(f"vpes-ed25519._domainkey.{d}", "TXT") == [crypto.dkim_public_record(ed)]
    assert "k=ed25519" in crypto.dkim_public_record(ed)


def test_foreign_records_untouched_and_delete_removes_ours(
    api: Kube, operator: OperatorProcess, knot: KnotServer, namespace: str, plan: str
) -> None:
    d = f"taken.{ZONE}"
    knot.update(ZONE, "add", d, 300, "TXT", '"v=spf1 include:other.example -all"')
    knot.update(ZONE, "add", d, 300, "TXT", '"site-verification=abc"')
    knot.update(ZONE, "add", f"www.{d}", 300, "A", "192.0.2.80")
    api.apply(server_body("taken", namespace, spec(plan, d)))
    obj = wait_condition(api, namespace, "taken", "DNSPublished", "False", "RecordConflict")
    c = condition(obj, "DNSPublished")
    assert c is not None and f"TXT {d}" in c["message"] and "include:other.example" in c["message"]
    assert "remove it" in c["message"]
    wait_for(lambda: knot.query(d, "MX") == [f"10 {MX_HOST}."], "the other records published")
    assert sorted(knot.query(d, "TXT")) == [
        "site-verification=abc",
        "v=spf1 include:other.example -all",
    ], "the foreign SPF is never overwritten"
    obj = wait_condition(api, namespace, "taken", "DNSVerified", "False", "RecordsNotFound")
    spf = next(r for r in obj["status"]["dnsRecords"] if r["type"] == "TXT" and r["name"] == d)
    assert spf["check"] == "Fail" and "include:other.example" in " ".join(spf["found"])
    assert spf["fix"]

    harvest_secrets(api, namespace)
    api.delete(API_VERSION, "PersonalMailServer", namespace, "taken")
    wait_for(lambda: get_server(api, namespace, "taken") is None, "the server to go")
    assert knot.query(d, "MX") == []
    assert knot.query(f"_dmarc.{d}", "TXT") == []
    assert knot.query(f"autoconfig.{d}", "CNAME") == []
    assert sorted(knot.query(d, "TXT")) == [
        "site-verification=abc",
        "v=spf1 include:other.example -all",
    ]
    assert knot.query(f"www.{d}", "A") == ["192.0.2.80"]
    assert api.get("v1", "ConfigMap", namespace, "taken-dns") is None or wait_for(
        lambda: api.get("v1", "ConfigMap", namespace, "taken-dns") is None, "ownership released"
    )


def test_delete_removes_every_record(
    api: Kube, operator: OperatorProcess, knot: KnotServer, namespace: str, plan: str
) -> None:
    d = f"gone.{ZONE}"
    api.apply(server_body("gone", namespace, spec(plan, d)))
    obj = wait_condition(api, namespace, "gone", "DNSVerified", "True")
    names = {(r["name"], r["type"]) for r in obj["status"]["dnsRecords"]}
    harvest_secrets(api, namespace)
    api.delete(API_VERSION, "PersonalMailServer", namespace, "gone")
    wait_for(lambda: get_server(api, namespace, "gone") is None, "the server to go")
    for name, rtype in names:
        assert knot.query(name, rtype) == [], (name, rtype)


def test_zone_not_served_is_a_condition(
    api: Kube, operator: OperatorProcess, namespace: str, plan: str
) -> None:
    api.apply(server_body("lost", namespace, spec(plan, "nowhere.example")))
    obj = wait_condition(api, namespace, "lost", "DNSPublished", "False", "ZoneNotServed")
    c = condition(obj, "DNSPublished")
    assert c is not None and "nowhere.example" in c["message"] and "Manual" in c["message"]
    assert condition(obj, "DNSVerified")["status"] == "False"  # type: ignore[index]
    assert operator.alive()


def test_manual_mode_publishes_nothing(
    api: Kube, operator: OperatorProcess, knot: KnotServer, namespace: str, plan: str
) -> None:
    d = f"byhand.{ZONE}"
    api.apply(server_body("byhand", namespace, spec(plan, d, mode="Manual")))
    wait_condition(api, namespace, "byhand", "DNSPublished", "False", "ManualMode")
    # Once the DKIM key is made, the list is complete.
    obj = wait_condition(api, namespace, "byhand", "DNSVerified", "False", "RecordsNotFound")
    records = obj["status"]["dnsRecords"]
    assert len(records) >= 11 and all(r["value"] for r in records)
    assert any(r["name"] == f"vpes._domainkey.{d}" for r in records)
    assert knot.query(d, "MX") == []
    mx = next(r for r in obj["status"]["dnsRecords"] if r["type"] == "MX")
    assert mx["check"] == "Fail" and mx["fix"].startswith("missing: publish MX")
    # The customer publishes them: the periodic re-check notices.
    for r in records:
        if r["type"] == "TXT":
            value = " ".join(f'"{c}"' for c in _chunks(r["value"]))
        else:
            value = r["value"]
        knot.update(ZONE, "add", r["name"], r["ttl"], r["type"], value)
    wait_condition(api, namespace, "byhand", "DNSVerified", "True")


def _chunks(text: str) -> list[str]:
    return [text[i : i + 255] for i in range(0, len(text), 255)]


def test_signed_zone_lists_tlsa(
    api: Kube, operator: OperatorProcess, knot: KnotServer, namespace: str, plan: str
) -> None:
    d = f"sec.{SIGNED_ZONE}"
    # The edge's TLSA is the provider's, published once in the MX's zone.
    knot.update(ZONE, "replace", f"_25._tcp.{MX_HOST}", 300, "TLSA", TLSA)
    api.apply(server_body("sec", namespace, spec(plan, d)))
    obj = wait_condition(api, namespace, "sec", "DNSVerified", "True")
    tlsa = [r for r in obj["status"]["dnsRecords"] if r["type"] == "TLSA"]
    assert [(r["name"], r["value"], r["check"]) for r in tlsa] == [
        (f"_25._tcp.{MX_HOST}", TLSA, "Pass")
    ]


def test_wrong_tsig_key_is_a_condition(
    api: Kube,
    operator: OperatorProcess,
    knot: KnotServer,
    secret_file: Path,
    namespace: str,
    plan: str,
    tmp_path: Path,
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text(base64.b64encode(b"not the key" * 3).decode())
    operator.stop()
    operator.env["VPES_DNS_RFC2136_TSIG_SECRET_FILE"] = str(wrong)
    operator.start()
    try:
        d = f"badkey.{ZONE}"
        api.apply(server_body("badkey", namespace, spec(plan, d)))
        obj = wait_condition(api, namespace, "badkey", "DNSPublished", "False", "TSIGKeyRejected")
        c = condition(obj, "DNSPublished")
        assert c is not None and KEY_NAME in c["message"] and "configure the key" in c["message"]
        assert knot.query(d, "MX") == []
        assert operator.alive(), "a DNS fault is a condition, not a crash"
    finally:
        operator.stop()
        operator.env["VPES_DNS_RFC2136_TSIG_SECRET_FILE"] = str(secret_file)
        operator.start()
    # With the right key again, the same server gets its records.
    wait_condition(api, namespace, "badkey", "DNSVerified", "True")


def test_unreachable_server_is_a_condition(
    api: Kube, operator: OperatorProcess, knot: KnotServer, namespace: str, plan: str
) -> None:
    dead = f"127.0.77.2:{free_port('127.0.77.2')}"  # nothing listens there
    old = restarted(operator, VPES_DNS_RFC2136_SERVER=dead)
    try:
        d = f"nodns.{ZONE}"
        api.apply(server_body("nodns", namespace, spec(plan, d)))
        obj = wait_condition(
            api, namespace, "nodns", "DNSPublished", "False", "DNSServerUnreachable"
        )
        c = condition(obj, "DNSPublished")
        assert c is not None and dead in c["message"], c
        assert "VPES_DNS_RFC2136_SERVER" in c["message"], "the message says what to fix"
        event = wait_event(api, namespace, "nodns", "DNSServerUnreachable")
        assert event["type"] == "Warning" and dead in event["message"]
        assert operator.alive(), "a DNS fault is a condition, not a crash"
        assert "DNS of nodns failed" not in operator.log_text(), "the fault raised"
        assert knot.query(d, "MX") == []
    finally:
        restore(operator, old)
    # With the right server again, the same server gets its records.
    wait_condition(api, namespace, "nodns", "DNSVerified", "True")
    assert knot.query(d, "MX") == [f"10 {MX_HOST}."]


def test_listed_outbound_address_is_a_condition_and_an_event(
    api: Kube, operator: OperatorProcess, knot: KnotServer, namespace: str, plan: str
) -> None:
    old = restarted(
        operator,
        VPES_DNSBL_ZONES=BLOCKLIST,
        VPES_OUTBOUND_ADDRESSES=f"192.0.2.25,{LISTED}",
    )
    try:
        d = f"listed.{ZONE}"
        api.apply(server_body("listed", namespace, spec(plan, d)))
        obj = wait_condition(
            api, namespace, "listed", "DNSVerified", "False", "OutboundAddressListed"
        )
        c = condition(obj, "DNSVerified")
        assert c is not None
        assert f"{LISTED} is listed on {BLOCKLIST} (listed for testing)" in c["message"], c
        assert "192.0.2.25" not in c["message"], "an address no list holds is not named"
        assert all(r["check"] == "Pass" for r in obj["status"]["dnsRecords"])
        event = wait_event(api, namespace, "listed", "OutboundAddressListed")
        assert event["type"] == "Warning"
        assert event["message"].startswith("DNSVerified=False: ") and LISTED in event["message"]
        assert operator.alive()
    finally:
        restore(operator, old)
    wait_condition(api, namespace, "listed", "DNSVerified", "True", "AllRecordsFound")
    assert wait_event(api, namespace, "listed", "AllRecordsFound")["type"] == "Normal"
    assert knot.query(d, "TXT") == ["v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 -all"]


def test_verification_failure_is_a_condition_an_event_and_a_metric(
    api: Kube, operator: OperatorProcess, metrics_port: int, namespace: str, plan: str
) -> None:
    d = f"unpublished.{ZONE}"
    api.apply(server_body("unpub", namespace, spec(plan, d, mode="Manual")))
    obj = wait_condition(api, namespace, "unpub", "DNSVerified", "False", "RecordsNotFound")
    failing = [r for r in obj["status"]["dnsRecords"] if r["check"] == "Fail"]
    assert failing
    event = wait_event(api, namespace, "unpub", "RecordsNotFound")
    assert event["type"] == "Warning" and "missing: publish MX" in event["message"]
    series = f'vpes_dns_verification_failures_total{{namespace="{namespace}",server="unpub"}}'
    first = wait_for(lambda: scrape(metrics_port).get(series), series)
    assert first >= len(failing)
    # Each re-check that still finds them wrong counts them again.
    wait_for(lambda: (scrape(metrics_port).get(series) or 0) > first, f"{series} to grow", 30)
    harvest_secrets(api, namespace)
    api.delete(API_VERSION, "PersonalMailServer", namespace, "unpub")
    wait_for(lambda: get_server(api, namespace, "unpub") is None, "the server to go")
    assert series not in scrape(metrics_port), "a deleted server's series goes with it"


def test_provider_is_chosen_per_server(
    api: Kube, operator: OperatorProcess, knot: KnotServer, namespace: str, plan: str
) -> None:
    auto, byname, manual, bogus = (f"{n}.{ZONE}" for n in ("auto", "byname", "manual", "bogus"))
    api.apply(server_body("auto", namespace, spec(plan, auto)))  # the default: rfc2136
    api.apply(server_body("byname", namespace, spec(plan, byname, provider="rfc2136")))
    api.apply(server_body("manual", namespace, spec(plan, manual, provider="manual")))
    api.apply(server_body("bogus", namespace, spec(plan, bogus, provider="nosuch")))
    for name in ("auto", "byname"):
        obj = wait_condition(api, namespace, name, "DNSVerified", "True")
        c = condition(obj, "DNSPublished")
        assert c is not None and c["status"] == "True" and "through rfc2136" in c["message"]
    wait_condition(api, namespace, "manual", "DNSPublished", "False", "ManualMode")
    obj = wait_condition(api, namespace, "bogus", "DNSPublished", "False", "UnknownProvider")
    c = condition(obj, "DNSPublished")
    assert c is not None and "'nosuch'" in c["message"] and "spec.dns.provider" in c["message"]
    assert knot.query(auto, "MX") == knot.query(byname, "MX") == [f"10 {MX_HOST}."]
    wait_condition(api, namespace, "manual", "DNSVerified", "False", "RecordsNotFound")
    assert knot.query(manual, "MX") == [] and knot.query(bogus, "MX") == []
    # The manual server moves to the provider: the operator publishes its records now.
    api.apply(server_body("manual", namespace, spec(plan, manual, provider="rfc2136")))
    wait_condition(api, namespace, "manual", "DNSVerified", "True")
    assert knot.query(manual, "MX") == [f"10 {MX_HOST}."]
    assert operator.alive()


def test_dnsbl_lists_the_test_address(knot: KnotServer) -> None:
    resolvers = verify.Resolvers([knot.address], 3.0)
    hits = verify.dnsbl(
        resolvers, [LISTED, "192.0.2.25", "10.0.0.0/8"], [BLOCKLIST], verify.DNSBLCache()
    )
    assert [(h.address, h.zone) for h in hits] == [(LISTED, BLOCKLIST)]
    assert "listed for testing" in hits[0].reason


def srv(knot: KnotServer, domain: str) -> dict[str, str]:
    """The mail clients' SRV records (RFC 6186) of `domain`, by service, as Knot answers."""
    found = {s: knot.query(f"_{s}._tcp.{domain}", "SRV") for s in ("submissions", "imaps", "pop3s")}
    return {s: v[0] if len(v) == 1 else str(v) for s, v in found.items()}


def test_a_mail_host_points_at_the_dedicated_address_once_it_has_one(
    api: Kube, operator: OperatorProcess, knot: KnotServer, namespace: str
) -> None:
    """spec.mailHost on a dedicated-address plan: its records wait for the LoadBalancer's
    address (written here as a cloud's controller would), then point at it, and the
    domain's mail client SRV records move from the edge's hosts to it, on the ports the
    LoadBalancer exposes; they go with the server."""
    own = f"own-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(own, features={"dedicatedAddress": True}))
    d, host = f"own.{ZONE}", f"mail.own.{ZONE}"
    try:
        api.apply(server_body("own", namespace, {**spec(own, d), "mailHost": host}))
        obj = wait_condition(api, namespace, "own", "DNSPublished", "False", "WaitingForAddress")
        c = condition(obj, "DNSPublished")
        assert c is not None and "own-public" in c["message"] and host in c["message"]
        wait_for(lambda: knot.query(d, "MX") == [f"10 {MX_HOST}."], "the other records published")
        assert knot.query(host, "A") == []
        edge = OperatorSettings()  # the operator's imap_host and smtp_host: the defaults
        assert srv(knot, d) == {
            "submissions": f"0 1 465 {edge.smtp_host}.",
            "imaps": f"0 1 993 {edge.imap_host}.",
            "pop3s": f"0 1 995 {edge.imap_host}.",
        }, "no SRV record names the mail host before it resolves"
        path = api.resource("v1", "Service").path(namespace, "own-public") + "/status"
        ingress = [{"ip": "192.0.2.60"}, {"ip": "2001:db8::60"}]
        api.request(
            "PATCH",
            path,
            body={"status": {"loadBalancer": {"ingress": ingress}}},
            content_type="application/merge-patch+json",
        )
        obj = wait_condition(api, namespace, "own", "DNSVerified", "True")
        mine = {(r["type"], r["value"]) for r in obj["status"]["dnsRecords"] if r["name"] == host}
        assert mine == {("A", "192.0.2.60"), ("AAAA", "2001:db8::60")}
        assert knot.query(host, "A") == ["192.0.2.60"]
        assert knot.query(host, "AAAA") == ["2001:db8::60"]
        ports = {"submissions": 465, "imaps": 993, "pop3s": 995}
        assert srv(knot, d) == {s: f"0 1 {port} {host}." for s, port in ports.items()}
        harvest_secrets(api, namespace)
        api.delete(API_VERSION, PMS, namespace, "own")
        wait_for(lambda: get_server(api, namespace, "own") is None, "the server to go")
        assert knot.query(host, "A") == [] and knot.query(host, "AAAA") == []
    finally:
        api.delete(API_VERSION, PMS, namespace, "own")
        api.delete(API_VERSION, "MailPlan", None, own)
