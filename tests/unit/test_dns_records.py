"""DNS records, conflict rules, values and the re-check schedule: pure, table-driven."""

from __future__ import annotations

import socket

import pytest
from vpes_operator import crypto
from vpes_operator.dns import rdata, records, service, verify
from vpes_operator.dns.errors import (
    DNSError,
    RecordConflictError,
    UnreachableError,
    ZoneNotServedError,
)
from vpes_operator.dns.ownership import Owned, OwnedRRset
from vpes_operator.dns.providers import rfc2136
from vpes_operator.dns.providers.base import clash
from vpes_operator.dns.schedule import Schedule
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

DKIM = {"vpes": "v=DKIM1; k=rsa; p=" + "A" * 392}
BASE = OperatorSettings(mx_host="mx.edge.example", edge_web_host="web.edge.example")


def by_name(recs: list[records.Record]) -> dict[tuple[str, str], str]:
    return {(r.type, r.name): r.value for r in recs}


EXPECTED = [
    ("MX", "example.org", "10 mx.edge.example."),
    ("TXT", "example.org", "v=spf1 mx -all"),
    ("TXT", "vpes._domainkey.example.org", DKIM["vpes"]),
    ("TXT", "_dmarc.example.org", "v=DMARC1; p=quarantine"),
    ("CNAME", "mta-sts.example.org", "web.edge.example."),
    ("SRV", "_submissions._tcp.example.org", "0 1 465 smtp.vpes.test."),
    ("SRV", "_imaps._tcp.example.org", "0 1 993 imap.vpes.test."),
    ("SRV", "_pop3s._tcp.example.org", "0 1 995 imap.vpes.test."),
    ("CNAME", "autoconfig.example.org", "web.edge.example."),
    ("CNAME", "autodiscover.example.org", "web.edge.example."),
    ("CNAME", "openpgpkey.example.org", "web.edge.example."),
]


@pytest.mark.parametrize(("rtype", "name", "value"), EXPECTED)
def test_default_records(rtype: str, name: str, value: str) -> None:
    got = by_name(records.domain_records("example.org", BASE, DKIM))
    assert got[(rtype, name)] == value


SETTINGS_CASES = [
    (
        "spf addresses and softfail",
        {"outbound_addresses": ("192.0.2.1", "2001:db8::/48"), "spf_all": "~all"},
        ("TXT", "example.org"),
        "v=spf1 ip4:192.0.2.1 ip6:2001:db8::/48 ~all",
    ),
    (
        "spf includes",
        {"outbound_addresses": ("192.0.2.0/24",), "spf_includes": ("spf.relay.example",)},
        ("TXT", "example.org"),
        "v=spf1 ip4:192.0.2.0/24 include:spf.relay.example -all",
    ),
    (
        "dmarc reject with reports",
        {"dmarc_policy": "reject", "dmarc_rua": "dmarc@edge.example"},
        ("TXT", "_dmarc.example.org"),
        "v=DMARC1; p=reject; rua=mailto:dmarc@edge.example",
    ),
    (
        "tls-rpt",
        {"tls_rpt_rua": "tls@edge.example"},
        ("TXT", "_smtp._tls.example.org"),
        "v=TLSRPTv1; rua=mailto:tls@edge.example",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "key", "value"), SETTINGS_CASES, ids=[c[0] for c in SETTINGS_CASES]
)
def test_records_follow_settings(
    case: str, change: dict[str, object], key: tuple[str, str], value: str
) -> None:
    settings = BASE.model_copy(update=change)
    assert by_name(records.domain_records("example.org", settings, DKIM))[key] == value


def test_optional_records_are_absent() -> None:
    recs = records.domain_records(
        "example.org", BASE.model_copy(update={"mta_sts_mode": "off"}), {}
    )
    types = {(r.type, r.name) for r in recs}
    assert ("TXT", "_smtp._tls.example.org") not in types, "no TLS-RPT address: no record"
    assert ("TXT", "vpes._domainkey.example.org") not in types, "no key yet: no DKIM"
    assert ("TXT", "_mta-sts.example.org") not in types
    assert all(r.value for r in recs)
    assert all(r.ttl == BASE.dns_ttl for r in recs)


def test_tlsa_only_when_signed_and_shared() -> None:
    settings = BASE.model_copy(update={"dane_tlsa": ("3 1 1 " + "ab" * 32,)})
    assert not [
        r for r in records.domain_records("example.org", settings, DKIM) if r.type == "TLSA"
    ]
    tlsa = [
        r
        for r in records.domain_records("example.org", settings, DKIM, dnssec=True)
        if r.type == "TLSA"
    ]
    assert [(r.name, r.shared) for r in tlsa] == [("_25._tcp.mx.edge.example", True)]


def test_mta_sts_id_changes_with_the_policy() -> None:
    testing = records.mta_sts_id(BASE)
    enforce = records.mta_sts_id(BASE.model_copy(update={"mta_sts_mode": "enforce"}))
    assert testing != enforce
    assert testing == records.mta_sts_id(BASE), "same policy, same id"
    assert testing.isalnum() and len(testing) <= 32
    assert "mode: testing" in records.mta_sts_policy(BASE)


def test_status_listing_has_purpose() -> None:
    recs = records.server_records(["b.example", "a.example"], BASE, {"a.example": DKIM})
    assert recs[0].domain == "a.example"
    wire = recs[0].wire()
    assert set(wire) >= {"domain", "type", "name", "value", "ttl", "purpose"}


def test_real_dkim_key_roundtrips_through_txt_chunks() -> None:
    value = crypto.dkim_public_record(crypto.generate_dkim_key(2048))
    rd = rdata.to_rdata("TXT", value)
    assert len(rd.strings) == 2 and all(len(s) <= 255 for s in rd.strings)  # type: ignore[attr-defined]
    assert rdata.canonical(rd) == value
    assert rdata.from_presentation("TXT", rdata.presentation("TXT", value)) == value


CLASH = [
    ("spf vs foreign spf", "TXT", {"v=spf1 include:x -all"}, {"v=spf1 mx -all"}, True),
    ("spf vs verification txt", "TXT", {"site-verification=1"}, {"v=spf1 mx -all"}, False),
    ("same spf already there", "TXT", {"v=spf1 mx -all"}, {"v=spf1 mx -all"}, False),
    ("foreign mx", "MX", {"10 other.example."}, {"10 mx.edge.example."}, True),
    ("foreign cname", "CNAME", {"x.example."}, {"web.edge.example."}, True),
    ("removal never clashes", "MX", {"10 other.example."}, set(), False),
]


@pytest.mark.parametrize(
    ("case", "rtype", "foreign", "want", "bad"), CLASH, ids=[c[0] for c in CLASH]
)
def test_clash(case: str, rtype: str, foreign: set[str], want: set[str], bad: bool) -> None:
    assert bool(clash(rtype, frozenset(foreign), frozenset(want))) is bad


def test_owned_roundtrip() -> None:
    owned = Owned(
        "rfc2136",
        {("a.example", "MX"): OwnedRRset("a.example", "a.example", "MX", ("10 mx.",), 300)},
    )
    assert Owned.load(owned.dump()) == owned
    assert not Owned.load(None)


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("192.0.2.1", "1.2.0.192.bl.example"),
        ("2001:db8::1", "1.0.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.bl.example"),
    ],
)
def test_dnsbl_names(address: str, name: str) -> None:
    assert verify.reverse_name(address, "bl.example") == name


def test_schedule_backs_off_then_relaxes() -> None:
    s = OperatorSettings(
        dns_verify_min_interval=10, dns_verify_max_interval=40, dns_verify_ok_interval=1000
    )
    sched = Schedule()
    assert sched.is_due("u", 1, 0)
    intervals = [sched.done("u", 1, False, s, 0) for _ in range(4)]
    assert intervals == [10, 20, 40, 40]
    assert not sched.is_due("u", 1, 39) and sched.is_due("u", 1, 40)
    assert sched.is_due("u", 2, 1), "a spec change is checked at once"
    assert sched.done("u", 1, True, s, 0) == 1000
    assert sched.done("u", 1, False, s, 0) == 10, "a new failure starts over"


def test_schedule_checks_again_on_a_new_check_dns_token() -> None:
    s = OperatorSettings(dns_verify_ok_interval=1000)
    sched = Schedule()
    assert sched.is_due("u", 1, 0, None)
    sched.done("u", 1, True, s, 0)
    assert not sched.is_due("u", 1, 5, None), "no annotation: the back-off holds"
    assert sched.is_due("u", 1, 5, "t1"), "a token not acted on yet: check now"
    sched.done("u", 1, True, s, 5, token="t1")
    assert not sched.is_due("u", 1, 6, "t1"), "the same token is acted on once"
    assert sched.is_due("u", 1, 6, "t2")
    assert not sched.is_due("u", 1, 6, None), "removing the annotation asks for nothing"


def test_ed25519_dkim_is_published_alongside_rsa() -> None:
    rsa = crypto.dkim_public_record(crypto.generate_dkim_key(1024))
    ed = crypto.dkim_public_record(crypto.generate_dkim_ed25519_key())
    recs = records.domain_records("example.org", BASE, {"vpes": rsa, "vpes-ed25519": ed})
    got = by_name(recs)
    assert got[("TXT", "vpes._domainkey.example.org")] == rsa
    assert got[("TXT", "vpes-ed25519._domainkey.example.org")] == ed


class Answers:
    """What the resolvers answer, per (name, type): the verdict logic needs no server."""

    def __init__(self, answers: dict[tuple[str, str], tuple[str, ...] | None]) -> None:
        self.answers = answers

    def values(self, name: str, rtype: str) -> tuple[str, ...]:
        found = self.answers.get((name, rtype), ())
        if found is None:
            raise UnreachableError(f"no resolver answered {rtype} {name}")
        return found


MX = records.Record("example.org", records.MX, "MX", "example.org", "10 mx.edge.example.", 300)
SPF = records.Record("example.org", records.SPF, "TXT", "example.org", "v=spf1 mx -all", 300)
CHECKS = [
    ("right", MX, ("10 mx.edge.example.",), verify.PASS, None),
    ("missing", MX, (), verify.FAIL, "missing: publish MX example.org"),
    ("wrong", MX, ("10 other.example.",), verify.FAIL, "wrong value: publish MX"),
    ("extra mx", MX, ("10 mx.edge.example.", "20 b.example."), verify.FAIL, "conflicting: remove"),
    ("other txt is fine", SPF, ("v=spf1 mx -all", "site-verification=1"), verify.PASS, None),
    ("two spf", SPF, ("v=spf1 mx -all", "v=spf1 a -all"), verify.FAIL, "conflicting: remove"),
    ("no answer", MX, None, verify.UNKNOWN, "could not check: no resolver answered"),
]


@pytest.mark.parametrize(
    ("case", "record", "found", "verdict", "fix"), CHECKS, ids=[c[0] for c in CHECKS]
)
def test_check_verdicts(
    case: str,
    record: records.Record,
    found: tuple[str, ...] | None,
    verdict: str,
    fix: str | None,
) -> None:
    got = verify.check(Answers({(record.name, record.type): found}), record)  # type: ignore[arg-type]
    assert got.verdict == verdict
    if fix is None:
        assert got.fix is None
    else:
        assert got.fix is not None and got.fix.startswith(fix), got.fix


PASSED = verify.Check(MX, verify.PASS, ("10 mx.edge.example.",))
FAILED = verify.Check(MX, verify.FAIL, (), "missing: publish MX example.org")
UNKNOWN = verify.Check(SPF, verify.UNKNOWN, (), "could not check: no resolver answered")
LISTED = verify.Listing("192.0.2.25", "bl.example", "spam seen")
VERIFIED = [
    ("all pass", [PASSED], [], True, "AllRecordsFound", "are published"),
    ("one fails", [PASSED, FAILED], [], False, "RecordsNotFound", "1 of 2 records"),
    ("fail beats unknown", [FAILED, UNKNOWN], [LISTED], False, "RecordsNotFound", "missing"),
    ("unknown", [PASSED, UNKNOWN], [], False, "ResolverUnreachable", "could not be checked"),
    (
        "listed",
        [PASSED],
        [LISTED],
        False,
        "OutboundAddressListed",
        "192.0.2.25 is listed on bl.example (spam seen)",
    ),
]


@pytest.mark.parametrize(
    ("case", "checks", "listings", "ok", "reason", "text"), VERIFIED, ids=[v[0] for v in VERIFIED]
)
def test_verified_condition(
    case: str,
    checks: list[verify.Check],
    listings: list[verify.Listing],
    ok: bool,
    reason: str,
    text: str,
) -> None:
    cond = service._verified_condition(checks, listings, 1)
    assert (cond.type, cond.status, cond.reason) == ("DNSVerified", ok, reason)
    assert text in cond.message


def test_the_most_basic_fault_names_the_condition() -> None:
    problems: list[DNSError] = [
        RecordConflictError("TXT a.example already holds x"),
        UnreachableError("the DNS server 127.0.0.9:53 cannot be reached"),
        ZoneNotServedError("no zone holds b.example"),
    ]
    cond = service._problem_condition(problems)
    assert (cond.status, cond.reason) == (False, "DNSServerUnreachable")
    assert cond.message.startswith("the DNS server 127.0.0.9:53 cannot be reached; ")
    assert "TXT a.example" in cond.message and "no zone holds b.example" in cond.message


def test_dead_server_says_what_to_fix() -> None:
    with socket.socket() as s:  # a port nobody listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = rfc2136.RFC2136Store(f"127.0.0.1:{port}", None, timeout=1.0)
    with pytest.raises(UnreachableError) as e:
        store.zone_for("example.org")
    assert e.value.reason == "DNSServerUnreachable" and e.value.fatal
    assert f"127.0.0.1:{port}" in e.value.message
    assert "VPES_DNS_RFC2136_SERVER" in e.value.message
