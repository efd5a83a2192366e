"""The overview's "Is my server healthy and trusted?" answers: each condition under
its question, and the DNS line summed up per domain instead of every record."""

from __future__ import annotations

from typing import Any

import pytest
from vpes_panel import health

pytestmark = pytest.mark.unit

REC = {"type": "TXT", "ttl": 300, "value": "v=spf1 mx -all"}
STATUS: dict[str, Any] = {
    "conditions": [
        {"type": "Ready", "status": "True", "message": "Postfix and Dovecot are running"},
        {"type": "DNSVerified", "status": "False", "message": "MX a.example: missing: ... " * 40},
        {"type": "BackupHealthy", "status": "Unknown", "message": "no backup yet"},
    ],
    "dnsRecords": [
        {**REC, "domain": "a.example", "name": "a.example", "check": "Fail"},
        {**REC, "domain": "a.example", "name": "x.a.example", "check": "Pass"},
        {**REC, "domain": "b.example", "name": "b.example", "check": "Pass"},
    ],
}


def by_type(status: dict[str, Any]) -> dict[str, health.Check]:
    return {c.type: c for c in health.checks(status)}


def test_each_condition_answers_its_question() -> None:
    checks = by_type(STATUS)
    assert [c.type for c in health.checks(STATUS)] == [t for t, _ in health.QUESTIONS]
    assert (checks["Ready"].answer, checks["Ready"].state) == ("Yes", "good")
    assert checks["BackupHealthy"].answer == "Not known yet"
    assert checks["Deliverable"].answer == "Not checked yet", "no condition yet"


def test_dns_line_names_the_domains_to_fix_not_every_record() -> None:
    dns = by_type(STATUS)["DNSVerified"]
    assert dns.answer == "No"
    assert dns.message == (
        "a.example: 1 of 2 records missing or wrong. "
        "Each domain's page under Domains says what to publish."
    )


def test_dns_line_keeps_the_operators_message_when_no_record_is_wrong() -> None:
    status = {**STATUS, "dnsRecords": [{**REC, "domain": "b.example", "check": "Pass"}]}
    assert by_type(status)["DNSVerified"].message.startswith("MX a.example")
