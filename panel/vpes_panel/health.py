"""The server's state in plain words: what the operator already computed, rephrased.

The panel does not check anything itself: each line is one of the server's
conditions (its status and the operator's message) under a question a person
would ask, good or not, and what to do when not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vpes_operator.models.conditions import ConditionType as C

from . import dns_view

# The conditions a customer sees, in order, with the question each answers.
QUESTIONS: list[tuple[str, str]] = [
    (C.READY, "Is my server running and taking mail?"),
    (C.DNS_VERIFIED, "Are my domains' DNS records right?"),
    (C.CERTIFICATE_READY, "Does my server have a valid certificate?"),
    (C.BACKUP_HEALTHY, "Is my mail backed up?"),
    (C.DELIVERABLE, "Will other servers accept my mail (not on blocklists)?"),
    (C.STORAGE_HEALTHY, "Is there room for new mail?"),
    (C.DOMAINS_ROUTED, "Does mail for all my domains reach my server?"),
]


@dataclass(frozen=True)
class Check:
    type: str
    question: str
    state: str  # "good", "bad" or "unknown"
    answer: str
    message: str


def checks(status: dict[str, Any]) -> list[Check]:
    by_type = {str(c.get("type")): c for c in status.get("conditions") or []}
    out = []
    for type_, question in QUESTIONS:
        cond = by_type.get(type_)
        if cond is None:
            out.append(Check(type_, question, "unknown", "Not checked yet", ""))
            continue
        good = cond.get("status") == "True"
        unknown = cond.get("status") == "Unknown"
        state = "good" if good else "unknown" if unknown else "bad"
        answer = "Yes" if good else "Not known yet" if unknown else "No"
        message = str(cond.get("message") or "")
        if type_ == C.DNS_VERIFIED and not good:
            message = dns_summary(status) or message
        out.append(Check(type_, question, state, answer, message))
    return out


def dns_summary(status: dict[str, Any]) -> str:
    """Which domains have records to fix, in one line (the condition's message lists
    every record of every domain: that is each domain's own page)."""
    domains = sorted({str(r.get("domain")) for r in status.get("dnsRecords") or []})
    parts = []
    for domain in domains:
        rows = dns_view.records(status, domain)
        counts = dns_view.summary(rows)
        bad = counts["wrong"] + counts["missing"]
        if bad:
            parts.append(f"{domain}: {bad} of {len(rows)} records missing or wrong")
    if not parts:
        return ""
    return "; ".join(parts) + ". Each domain's page under Domains says what to publish."


@dataclass(frozen=True)
class Sending:
    recipients: int | None
    limit: int | None
    held: bool
    reason: str


def sending(status: dict[str, Any], plan_limit: int | None) -> Sending:
    out = status.get("outbound") or {}
    held = bool(out.get("held"))
    reason = str(out.get("reason") or "")
    if held and not reason:
        reason = "Your outgoing mail is held by the relay."
    limit = out.get("limit")
    return Sending(out.get("recipients"), limit if limit is not None else plan_limit, held, reason)


def human_bytes(value: int | None) -> str:
    if value is None:
        return "not measured yet"
    size = float(value)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} bytes"
