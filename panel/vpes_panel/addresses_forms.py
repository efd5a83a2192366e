"""Aliases, forwards and catch-alls as typed, checked against what the server already
uses; and what a removal loses.

An address belongs to one thing only (a mailbox, an alias or a forward): a
second claim is refused here with the name of the first, so that a person
never wonders where mail to it goes. A bare alias ("info") is that name in
every domain of the server, so it is compared in each.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from vpes_operator.models.common import ADDRESS_PATTERN, LOCAL_PART_ONLY_PATTERN
from vpes_operator.models.server import MAX_ALIASES, MAX_FORWARD_TARGETS, MAX_FORWARDS

from .forms import JSON, MAX_ADDRESS, MAX_LOCAL, InputError, domain_of, shown_domain

_ADDRESS_RE = re.compile(ADDRESS_PATTERN)
_LOCAL_RE = re.compile(LOCAL_PART_ONLY_PATTERN)


def taken(spec: JSON) -> dict[str, str]:
    """Every address the server delivers → what it is, in words."""
    domains = list(spec.get("domains") or [])
    out: dict[str, str] = {}
    for m in spec.get("mailboxes") or []:
        out.setdefault(str(m["address"]), f"the mailbox {m['address']}")
    for m in spec.get("mailboxes") or []:
        for alias in m.get("aliases") or []:
            full = [alias] if "@" in alias else [f"{alias}@{d}" for d in domains]
            for a in full:
                out.setdefault(a, f"an alias of {m['address']}")
    for f in spec.get("forwards") or []:
        out.setdefault(str(f["from"]), "a forward")
    return out


def _address(raw: str, what: str) -> str:
    address = raw.strip().lower()
    if not address:
        raise InputError(f"Enter {what}, like info@example.org.")
    if len(address) > MAX_ADDRESS:
        raise InputError(f"An address has at most {MAX_ADDRESS} characters.")
    local, at, _ = address.rpartition("@")
    if not at:
        raise InputError("Enter the whole address with its @ and domain, like name@example.org.")
    if len(local) > MAX_LOCAL:
        raise InputError(f"The part before the @ has at most {MAX_LOCAL} characters.")
    if not _ADDRESS_RE.match(address):
        raise InputError(
            f"{raw.strip()} is not an address we accept: use letters, digits and . _ - + "
            "before the @ (no spaces, quotes, '%' or '!'), and a domain like example.org."
        )
    return address


def _ours(address: str, spec: JSON) -> None:
    domains = spec.get("domains") or []
    if domain_of(address) not in domains:
        names = ", ".join(shown_domain(d) for d in domains)
        raise InputError(
            f"{shown_domain(domain_of(address))} is not one of this server's domains "
            f"({names}). Add it under Domains first, or use one of these."
        )


def _free(addresses: list[str], spec: JSON) -> None:
    used = taken(spec)
    for a in addresses:
        if a in used:
            raise InputError(f"{a} is already {used[a]}. An address can be used only once.")


def alias(raw: str, spec: JSON, mailbox: JSON) -> str:
    """A new alias of `mailbox`: a bare name (every domain) or an address of the server."""
    text = raw.strip().lower()
    if not text:
        raise InputError("Enter the alias, like info or info@example.org.")
    if "@" in text:
        value = _address(text, "the alias")
        _ours(value, spec)
        full = [value]
    else:
        if len(text) > MAX_LOCAL:
            raise InputError(f"The part before the @ has at most {MAX_LOCAL} characters.")
        if not _LOCAL_RE.match(text):
            raise InputError(
                f"{raw.strip()} is not a name we accept: letters, digits and . _ - + only."
            )
        value = text
        full = [f"{text}@{d}" for d in spec.get("domains") or []]
    _free(full, spec)
    if len(mailbox.get("aliases") or []) >= MAX_ALIASES:
        raise InputError(f"A mailbox has at most {MAX_ALIASES} aliases. Remove one first.")
    return value


def aliases(raw: str, spec: JSON, address: str) -> list[str]:
    """A mailbox's whole list of aliases as typed, one a line, each checked against
    everything else the server delivers (the mailbox's current aliases excepted)."""
    others = copy.deepcopy(spec)
    for m in others.get("mailboxes") or []:
        if m.get("address") == address:
            m["aliases"] = []
    mine: JSON = {"aliases": []}
    for line in (part.strip() for part in re.split(r"[\n,;]", raw)):
        if not line:
            continue
        value = alias(line, others, mine)
        if value not in mine["aliases"]:
            mine["aliases"].append(value)
    return list(mine["aliases"])


def forward_from(raw: str, spec: JSON) -> str:
    address = _address(raw, "the address to forward")
    _ours(address, spec)
    _free([address], spec)
    if len(spec.get("forwards") or []) >= MAX_FORWARDS:
        raise InputError(f"A server has at most {MAX_FORWARDS} forwards. Remove one first.")
    return address


def forward_to(raw: str, source: str | None) -> list[str]:
    """The targets, one a line (commas too), in order, each once."""
    lines = [part.strip() for part in re.split(r"[\n,;]", raw) if part.strip()]
    if not lines:
        raise InputError("Enter at least one address to send the mail on to.")
    out: list[str] = []
    for line in lines:
        target = _address(line, "an address")
        if target == source:
            raise InputError(f"{target} would forward to itself. Enter other addresses.")
        if target not in out:
            out.append(target)
    if len(out) > MAX_FORWARD_TARGETS:
        raise InputError(
            f"A forward goes to at most {MAX_FORWARD_TARGETS} addresses ({len(out)} given)."
        )
    return out


def catch_all_domain(raw: str, spec: JSON) -> str:
    domain = raw.strip().lower()
    if domain not in (spec.get("domains") or []):
        raise InputError("Choose one of this server's domains.")
    if any(c.get("domain") == domain for c in spec.get("catchAll") or []):
        raise InputError(f"{shown_domain(domain)} has a catch-all already. Remove it first.")
    return domain


def catch_all_to(raw: str, spec: JSON) -> str:
    address = raw.strip().lower()
    if address not in {m["address"] for m in spec.get("mailboxes") or []}:
        raise InputError("Choose one of this server's mailboxes.")
    return address


# -- what a removal loses ------------------------------------------------------------


@dataclass
class DomainLoss:
    """Everything removing one domain takes with it (all removed in the same change)."""

    domain: str
    mailboxes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)  # full addresses of the domain
    forwards: list[str] = field(default_factory=list)
    catch_alls: list[str] = field(default_factory=list)  # domains whose catch-all goes


def domain_loss(spec: JSON, domain: str) -> DomainLoss:
    loss = DomainLoss(domain)
    loss.mailboxes = [
        str(m["address"])
        for m in spec.get("mailboxes") or []
        if domain_of(str(m["address"])) == domain
    ]
    loss.aliases = [
        a
        for m in spec.get("mailboxes") or []
        if m["address"] not in loss.mailboxes
        for a in m.get("aliases") or []
        if "@" in a and domain_of(a) == domain
    ]
    loss.forwards = [
        str(f["from"]) for f in spec.get("forwards") or [] if domain_of(str(f["from"])) == domain
    ]
    loss.catch_alls = [
        str(c["domain"])
        for c in spec.get("catchAll") or []
        if c.get("domain") == domain or c.get("to") in loss.mailboxes
    ]
    return loss


def drop_domain(spec: JSON, loss: DomainLoss) -> None:
    """Remove the domain and everything of `loss` from `spec` (the CRD's rules refuse a
    mailbox, forward or catch-all left without its domain)."""
    spec["domains"] = [d for d in spec.get("domains") or [] if d != loss.domain]
    spec["mailboxes"] = [
        m for m in spec.get("mailboxes") or [] if m["address"] not in loss.mailboxes
    ]
    for m in spec["mailboxes"]:
        if m.get("aliases"):
            m["aliases"] = [a for a in m["aliases"] if a not in loss.aliases]
    spec["forwards"] = [f for f in spec.get("forwards") or [] if f["from"] not in loss.forwards]
    spec["catchAll"] = [
        c for c in spec.get("catchAll") or [] if c.get("domain") not in loss.catch_alls
    ]
    panel = spec.get("panel")
    if isinstance(panel, dict) and panel.get("admins"):
        panel["admins"] = [a for a in panel["admins"] if a not in loss.mailboxes]


def catch_alls_to(spec: JSON, address: str) -> list[str]:
    """The domains whose catch-all delivers to `address`."""
    return [str(c["domain"]) for c in spec.get("catchAll") or [] if c.get("to") == address]


def refused_or_caught(spec: JSON, addresses: list[str]) -> str:
    """What becomes of mail to `addresses` once nothing claims them, in words."""
    caught = {str(c["domain"]): str(c["to"]) for c in spec.get("catchAll") or []}
    parts = []
    for a in addresses:
        to = caught.get(domain_of(a))
        parts.append(
            f"mail to {a} will go to {to} (the catch-all of {shown_domain(domain_of(a))})"
            if to
            else f"mail to {a} will be refused"
        )
    return "; ".join(parts) + "."


def alias_addresses(spec: JSON, value: str) -> list[str]:
    """The addresses an alias stands for (a bare name: one in each domain)."""
    if "@" in value:
        return [value]
    return [f"{value}@{d}" for d in spec.get("domains") or []]
