"""DNS faults end to end, against a real Knot DNS server: a wrong TSIG key, an
unreachable server, a listed outbound address and records not found are conditions
(with events and a metric) saying what to fix; the operator never crashes on them."""

from __future__ import annotations

import base64
from pathlib import Path

from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from .dns_support import BLOCKLIST, KEY_NAME, LISTED, ZONE, KnotServer, free_port, scrape
from .operator_support import (
    OperatorProcess,
    condition,
    get_server,
    harvest_secrets,
    server_body,
    wait_for,
)
from .rfc2136_support import (
    MX_HOST,
    metrics_port,
    operator,
    plan,
    restarted,
    restore,
    secret_file,
    spec,
    wait_condition,
    wait_event,
)

__all__ = ["metrics_port", "operator", "plan", "secret_file"]  # the module's fixtures


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
