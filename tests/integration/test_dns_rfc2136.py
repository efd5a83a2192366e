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

from .dns_support import BLOCKLIST, KEY_NAME, LISTED, SIGNED_ZONE, ZONE, KnotServer
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
def api(cluster: Any) -> Kube:
    return Kube(cluster.api_client(), field_manager="tests")


@pytest.fixture(scope="module")
def secret_file(knot: KnotServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tsig") / "secret"
    path.write_text(knot.secret)
    return path


@pytest.fixture(scope="module")
def operator(
    cluster: Any, knot: KnotServer, secret_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    kubeconfig = install_platform(cluster)
    op = OperatorProcess(
        kubeconfig, tmp_path_factory.mktemp("operator-dns"), dns_env(knot, secret_file)
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


@pytest.fixture
def namespace(api: Kube) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    harvest_secrets(api, name)
    api.delete("v1", "Namespace", None, name)


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


def test_dnsbl_lists_the_test_address(knot: KnotServer) -> None:
    resolvers = verify.Resolvers([knot.address], 3.0)
    hits = verify.dnsbl(
        resolvers, [LISTED, "192.0.2.25", "10.0.0.0/8"], [BLOCKLIST], verify.DNSBLCache()
    )
    assert [(h.address, h.zone) for h in hits] == [(LISTED, BLOCKLIST)]
    assert "listed for testing" in hits[0].reason
