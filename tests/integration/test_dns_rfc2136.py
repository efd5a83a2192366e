"""DNS end to end: the operator publishes through RFC 2136 + TSIG into a real Knot DNS
server, verifies live and removes only its own records; the provider chosen per server,
a signed zone, a customer's mail host. Its faults are in `test_dns_faults`."""

from __future__ import annotations

import base64
import uuid

from vpes_operator import API_VERSION, crypto
from vpes_operator.clients.kube import Kube
from vpes_operator.dns import verify
from vpes_operator.settings import OperatorSettings

from .dns_support import BLOCKLIST, LISTED, SIGNED_ZONE, ZONE, KnotServer
from .operator_support import (
    OperatorProcess,
    condition,
    get_server,
    harvest_secrets,
    plan_body,
    server_body,
    wait_for,
)
from .rfc2136_support import (
    MX_HOST,
    PMS,
    TLSA,
    metrics_port,
    operator,
    plan,
    secret_file,
    spec,
    wait_condition,
)

__all__ = ["metrics_port", "operator", "plan", "secret_file"]  # the module's fixtures


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
