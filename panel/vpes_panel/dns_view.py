"""One domain's DNS records in words: what to publish, and what the operator's last
live check found (the panel checks nothing itself; it shows status.dnsRecords)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vpes_operator.models.conditions import ConditionType as C
from vpes_operator.models.conditions import Reason

JSON = dict[str, Any]


@dataclass(frozen=True)
class Record:
    type: str
    name: str
    value: str
    ttl: int
    purpose: str
    verdict: str  # "published", "wrong", "missing" or "unchecked"
    words: str  # the verdict for a person
    found: list[str]
    fix: str


VERDICT_WORDS = {
    "published": "Published and right",
    "wrong": "Published, but wrong",
    "missing": "Missing: not published yet",
    "unchecked": "Not checked yet",
}


def verdict(record: JSON) -> str:
    check = record.get("check")
    if check == "Pass":
        return "published"
    if check == "Fail":
        return "wrong" if record.get("found") else "missing"
    return "unchecked"


def records(status: JSON, domain: str) -> list[Record]:
    out = []
    for r in status.get("dnsRecords") or []:
        if r.get("domain") != domain:
            continue
        v = verdict(r)
        out.append(
            Record(
                type=str(r.get("type", "")),
                name=str(r.get("name", "")),
                value=str(r.get("value", "")),
                ttl=int(r.get("ttl") or 0),
                purpose=str(r.get("purpose") or ""),
                verdict=v,
                words=VERDICT_WORDS[v],
                found=[str(f) for f in r.get("found") or []],
                fix=str(r.get("fix") or "") if v in ("wrong", "missing") else "",
            )
        )
    return out


def summary(rows: list[Record]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICT_WORDS, 0)
    for r in rows:
        counts[r.verdict] += 1
    return counts


@dataclass(frozen=True)
class Condition:
    state: str  # "good", "bad" or "unknown"
    words: str
    message: str


def condition(status: JSON, type_: str) -> Condition:
    """A condition of the server (DNSPublished, DNSVerified, DomainsRouted) in words."""
    found = next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)
    if found is None:
        return Condition("unknown", "Not known yet", "")
    s = found.get("status")
    state = "good" if s == "True" else "unknown" if s == "Unknown" else "bad"
    words = {"good": "Yes", "unknown": "Not known yet", "bad": "No"}[state]
    return Condition(state, words, str(found.get("message") or ""))


def domain_checked(rows: list[Record]) -> Condition:
    """The live checks of one domain's records in words (the server's DNSVerified
    condition speaks of every domain at once: too much for one domain's page)."""
    if not rows:
        return Condition("unknown", "Not known yet", "")
    counts = summary(rows)
    bad = counts["wrong"] + counts["missing"]
    if bad:
        return Condition(
            "bad", "No", f"{bad} of {len(rows)} records are missing or wrong: see each below."
        )
    if counts["unchecked"]:
        return Condition("unknown", "Not checked yet", "")
    return Condition("good", "Yes", f"Each of its {len(rows)} records is published and right.")


def managed(spec: JSON, status: JSON | None = None) -> bool:
    """Whether the provider publishes the records: the server asks for it (spec.dns.mode)
    and the provider's DNS is not set to "manual" (the operator then says ManualMode)."""
    if str((spec.get("dns") or {}).get("mode") or "Managed") != "Managed":
        return False
    published = next(
        (c for c in (status or {}).get("conditions") or [] if c.get("type") == C.DNS_PUBLISHED),
        None,
    )
    return (published or {}).get("reason") != Reason.MANUAL_MODE


CONDITIONS = {
    "published": C.DNS_PUBLISHED,
    "verified": C.DNS_VERIFIED,
    "routed": C.DOMAINS_ROUTED,
}
