"""A mailbox user's own page, as data: their mailbox, its use, its forwarding and
its vacation reply.

Forwarding of one's own mail is a `spec.forwards` entry whose `from` is the
mailbox's own address. Postfix's virtual_alias_maps replaces an address by its
targets, so a forward alone takes the mail away from the mailbox; "keep a copy"
adds the mailbox's own address to the targets (an address that maps to itself
stops the expansion there and is delivered). Whether the operator renders such
an entry is asked of its own rules (`forwarding_supported`): the panel shows the
form only where it works, and never writes a forward the operator would refuse
(a refused spec stops the whole server's configuration).

A vacation reply is the mailbox's own `vacation` (the operator renders it as a Sieve
script). Turned off, its subject and text stay for next time; turned off with
neither, it is removed. Its last day counts in UTC, as the script checks it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from vpes_operator.models.common import ADDRESS_PATTERN
from vpes_operator.models.server import (
    MAX_FORWARD_TARGETS,
    MAX_VACATION_DAYS,
    MAX_VACATION_MESSAGE,
    MAX_VACATION_SUBJECT,
    PersonalMailServerSpec,
)
from vpes_operator.render.addresses import resolve
from vpes_operator.render.checks import RenderError

from .health import human_bytes

JSON = dict[str, Any]
_ADDRESS = re.compile(ADDRESS_PATTERN)
_SEPARATORS = re.compile(r"[\s,;]+")


class FieldError(ValueError):
    """What is wrong with a field's value, for the person who typed it."""


@dataclass(frozen=True)
class Quota:
    used: str
    limit: str
    messages: int | None
    percent: int | None  # of the quota used; None until Dovecot has counted


@dataclass(frozen=True)
class Forwarding:
    targets: tuple[str, ...]
    keep_copy: bool

    @property
    def on(self) -> bool:
        return bool(self.targets)


@dataclass(frozen=True)
class Vacation:
    on: bool
    subject: str
    message: str
    days: int
    until: str  # YYYY-MM-DD, "" for no last day


DEFAULT_DAYS = 7
NO_VACATION = Vacation(False, "", "", DEFAULT_DAYS, "")


@dataclass(frozen=True)
class MailboxView:
    address: str
    display_name: str
    aliases: tuple[str, ...]
    quota: Quota | None
    forwarding: Forwarding
    vacation: Vacation = NO_VACATION


def mailbox(spec: JSON, status: JSON, address: str) -> MailboxView | None:
    """`address`'s mailbox as its user sees it; None when the spec has no such mailbox."""
    found = next((m for m in spec.get("mailboxes") or [] if m.get("address") == address), None)
    if found is None:
        return None
    domains = [str(d) for d in spec.get("domains") or []]
    aliases = [
        str(a) if "@" in str(a) else f"{a}@{d}" for a in found.get("aliases") or [] for d in domains
    ]
    return MailboxView(
        address=address,
        display_name=str(found.get("displayName") or ""),
        aliases=tuple(sorted(set(aliases))),
        quota=quota(status, address),
        forwarding=forwarding(spec, address),
        vacation=vacation(found),
    )


def quota(status: JSON, address: str) -> Quota | None:
    usage = (status.get("usage") or {}).get("mailboxUsage") or []
    mine = next((u for u in usage if u.get("address") == address), None)
    if mine is None:
        return None
    limit, used = int(mine.get("quotaBytes") or 0), mine.get("usedBytes")
    percent = None if used is None or limit <= 0 else min(100, round(100 * int(used) / limit))
    return Quota(
        used=human_bytes(None if used is None else int(used)),
        limit=human_bytes(limit),
        messages=None if mine.get("messages") is None else int(mine["messages"]),
        percent=percent,
    )


def forwarding(spec: JSON, address: str) -> Forwarding:
    entry = next((f for f in spec.get("forwards") or [] if f.get("from") == address), None)
    if entry is None:
        return Forwarding((), False)
    to = [str(t) for t in entry.get("to") or []]
    return Forwarding(tuple(t for t in to if t != address), address in to)


def parse_targets(text: str, own: str, keep_copy: bool) -> tuple[str, ...]:
    """The addresses typed into the forwarding field (commas, spaces or lines between
    them), lowercased, each once; FieldError saying what to fix."""
    found: list[str] = []
    for raw in _SEPARATORS.split(text.strip()):
        if not raw:
            continue
        addr = raw.lower()
        if len(addr) > 254 or not _ADDRESS.fullmatch(addr):
            raise FieldError(
                f"{raw[:80]} is not a mail address. Write addresses like alice@example.org, "
                "separated by commas."
            )
        if addr == own:
            raise FieldError(
                f"{own} is this mailbox. To keep your mail here too, tick "
                "“Keep a copy in this mailbox” instead."
            )
        if addr not in found:
            found.append(addr)
    room = MAX_FORWARD_TARGETS - (1 if keep_copy else 0)
    if len(found) > room:
        raise FieldError(
            f"Forward to at most {room} addresses{' when you keep a copy' if keep_copy else ''} "
            f"(you gave {len(found)})."
        )
    return tuple(found)


def set_forwarding(spec: JSON, address: str, targets: tuple[str, ...], keep_copy: bool) -> None:
    """Mutate `spec` so that `address`'s mail goes to `targets` (and stays, with
    `keep_copy`); no targets: no forward at all."""
    forwards = [f for f in spec.get("forwards") or [] if f.get("from") != address]
    if targets:
        to = [*targets, address] if keep_copy else list(targets)
        forwards.append({"from": address, "to": to})
    spec["forwards"] = forwards


@functools.cache
def forwarding_supported() -> bool:
    """Whether the operator renders a forward whose `from` is a mailbox (its own
    rules, asked with a small spec): where it refuses one, the panel offers no form."""
    probe = PersonalMailServerSpec.model_validate(
        {
            "plan": "probe",
            "owner": {"email": "owner@example.net"},
            "domains": ["example.org"],
            "mailboxes": [{"address": "a@example.org"}],
            "forwards": [{"from": "a@example.org", "to": ["b@example.net", "a@example.org"]}],
        }
    )
    try:
        resolve(probe, ("example.org",), 1 << 20)
    except RenderError:
        return False
    return True


def check_spec(spec: JSON) -> str | None:
    """The operator's own objection to `spec`'s addresses (None: it would render them)."""
    try:
        parsed = PersonalMailServerSpec.model_validate(spec)
        resolve(parsed, tuple(parsed.domains), 1 << 20)
    except RenderError as e:
        return str(e)
    except ValueError:
        return None  # the API server's validation says it better, next to the field
    return None


# -- vacation reply ---------------------------------------------------------------------


def vacation(mailbox: JSON) -> Vacation:
    v = mailbox.get("vacation")
    if not v:
        return NO_VACATION
    return Vacation(
        on=bool(v.get("enabled")),
        subject=str(v.get("subject") or ""),
        message=str(v.get("message") or ""),
        days=int(v.get("days") or DEFAULT_DAYS),
        until=str(v.get("until") or ""),
    )


def parse_vacation(
    on: bool, subject: str, message: str, days: str, until: str, today: date
) -> tuple[JSON | None, dict[str, str]]:
    """The mailbox's `vacation` from the form (None: remove it), and the message for
    each field that must be fixed (form field name → message)."""
    errors: dict[str, str] = {}
    subject = subject.strip()
    text = message.replace("\r\n", "\n").replace("\r", "\n").strip()
    if on and not subject:
        errors["vacation_subject"] = "Enter a subject for your replies."
    elif "\n" in subject or "\r" in subject:
        errors["vacation_subject"] = "The subject must be one line."
    elif len(subject) > MAX_VACATION_SUBJECT:
        errors["vacation_subject"] = (
            f"The subject has at most {MAX_VACATION_SUBJECT} characters (yours has {len(subject)})."
        )
    if on and not text:
        errors["vacation_message"] = "Enter the text of your replies."
    elif len(text) > MAX_VACATION_MESSAGE:
        errors["vacation_message"] = (
            f"The text has at most {MAX_VACATION_MESSAGE} characters (yours has {len(text)})."
        )
    number = days.strip() or str(DEFAULT_DAYS)
    if not number.isdigit() or not 1 <= int(number) <= MAX_VACATION_DAYS:
        errors["vacation_days"] = f"Enter a number of days from 1 to {MAX_VACATION_DAYS}."
    last = until.strip()
    if last:
        try:
            parsed = date.fromisoformat(last)
        except ValueError:
            errors["vacation_until"] = "Enter a date like 2025-08-31, or leave it empty."
        else:
            if parsed < today:
                errors["vacation_until"] = (
                    f"This day has passed. Enter today ({today.isoformat()}) or a later day, "
                    "or leave it empty."
                )
            last = parsed.isoformat()
    if errors:
        return None, errors
    if not on and not subject and not text:
        return None, {}
    value: JSON = {"enabled": on, "days": int(number)}
    if subject:
        value["subject"] = subject
    if text:
        value["message"] = text
    if last:
        value["until"] = last
    if not on and (not subject or not text):
        # The CRD needs both to keep a reply that is off: keep it only when whole.
        return None, {}
    return value, {}


def set_vacation(spec: JSON, address: str, value: JSON | None) -> None:
    """Mutate `spec` so that `address`'s mailbox has `value` as its vacation (None: none)."""
    for mailbox in spec.get("mailboxes") or []:
        if mailbox.get("address") == address:
            if value is None:
                mailbox.pop("vacation", None)
            else:
                mailbox["vacation"] = value
