"""The plan page as data: every limit of the server's MailPlan next to what the server
uses, why a server is suspended and what to do, and the plans one can change to.

The plan is read as the operator reads it (MailPlanSpec: the defaults of an
unset field filled in), so the page shows the limits the server really has.
Billing's annotations on the server (vpes_billing.naming) say who suspended it
and why; a suspension without them was made by the provider by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from vpes_billing import lifecycle
from vpes_billing import naming as billing
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.quantity import QuantityError, parse_bytes

from .health import human_bytes

JSON = dict[str, Any]
_DAILY = re.compile(r"^(\d{1,2})\s+(\d{1,2})\s+\*\s+\*\s+\*$")
_WEEKLY = re.compile(r"^(\d{1,2})\s+(\d{1,2})\s+\*\s+\*\s+([0-6])$")
DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


@dataclass(frozen=True)
class Limit:
    name: str
    used: str  # what the server uses ("" when the limit is no amount, e.g. a feature)
    allowed: str
    state: str  # "ok", "near" (80% or more), "full", or "" (nothing to compare)


def parse_plan(raw: JSON) -> MailPlanSpec | None:
    """The plan as the operator reads it; None when it is not valid (the operator then
    reports the server's plan as invalid, and the page says to ask the provider)."""
    try:
        return MailPlanSpec.model_validate(raw)
    except ValidationError:
        return None


def _size(value: str) -> int | None:
    try:
        return parse_bytes(value)
    except QuantityError:
        return None


def _state(used: int | None, allowed: int | None) -> str:
    if used is None or allowed is None:
        return ""
    if used >= allowed:
        return "full"
    return "near" if used * 5 >= allowed * 4 else "ok"


def schedule_words(cron: str) -> str:
    """A backup schedule in words where it is a simple daily or weekly one."""
    cron = cron.strip()
    if m := _DAILY.fullmatch(cron):
        return f"every day at {int(m[2]):02d}:{int(m[1]):02d} UTC"
    if m := _WEEKLY.fullmatch(cron):
        return f"every {DAYS[int(m[3])]} at {int(m[2]):02d}:{int(m[1]):02d} UTC"
    return f"on the schedule “{cron}” (cron, UTC)"


def limits(plan: MailPlanSpec, spec: JSON, status: JSON) -> list[Limit]:
    """Every limit of `plan`, with the server's use where there is one to compare."""
    usage = status.get("usage") or {}
    outbound = status.get("outbound") or {}
    mailboxes = int(usage.get("mailboxes", len(spec.get("mailboxes") or [])))
    domains = int(usage.get("domains", len(spec.get("domains") or [])))
    storage = _size(plan.storage)
    used = usage.get("storageUsedBytes")
    own_quota = sum(1 for m in spec.get("mailboxes") or [] if m.get("quota"))
    sent = outbound.get("recipients")
    backup = plan.backup
    features = plan.features
    yes = {True: "included", False: "not included"}
    return [
        Limit(
            "Mailboxes",
            str(mailboxes),
            str(plan.max_mailboxes),
            _state(mailboxes, plan.max_mailboxes),
        ),
        Limit("Domains", str(domains), str(plan.max_domains), _state(domains, plan.max_domains)),
        Limit(
            "Storage",
            human_bytes(None if used is None else int(used)),
            human_bytes(storage),
            _state(None if used is None else int(used), storage),
        ),
        Limit(
            "Quota of each mailbox (unless set for it)",
            f"{mailboxes - own_quota} of {mailboxes} mailboxes use it",
            human_bytes(_size(plan.default_quota)),
            "",
        ),
        Limit("Largest message, in or out", "", human_bytes(_size(plan.max_message_size)), ""),
        Limit(
            "Recipients per hour (sending)",
            "none counted yet" if sent is None else f"{int(sent)} in the last hour",
            str(plan.outbound_per_hour),
            _state(None if sent is None else int(sent), plan.outbound_per_hour),
        ),
        Limit(
            "Backups",
            "",
            schedule_words(backup.schedule) if backup.enabled else "no scheduled backups",
            "",
        ),
        Limit(
            "Backups kept",
            "",
            f"{backup.retention.daily} daily, {backup.retention.weekly} weekly, "
            f"{backup.retention.monthly} monthly",
            "",
        ),
        Limit("Webmail", "", yes[features.webmail], ""),
        Limit("Calendar and contacts", "", yes[features.calendar], ""),
        Limit("Spam filtering", "", str(features.antispam), ""),
        Limit("Own IP address", "", yes[features.dedicated_address], ""),
    ]


@dataclass(frozen=True)
class Suspension:
    reason: str
    todo: str
    portal: bool  # paying in the Stripe portal starts the server again


def suspension(spec: JSON, annotations: dict[str, str]) -> Suspension | None:
    """Why the server is suspended and what to do; None when it is not."""
    if not spec.get("suspended"):
        return None
    by = annotations.get(billing.ANNOTATION_SUSPENDED_BY, "")
    if by == lifecycle.SUSPENDED_FOR_PAYMENT:
        return Suspension(
            "A payment did not go through, and the grace period after it has ended.",
            "Pay the open invoice (or change your payment method) with “Manage payment "
            "and invoices” below. Your server starts again by itself within minutes of "
            "the payment.",
            True,
        )
    if by == lifecycle.SUSPENDED_FOR_INCOMPLETE:
        return Suspension(
            "The first payment of your subscription has not gone through yet.",
            "Complete it with “Manage payment and invoices” below; your server starts "
            "by itself once it is paid.",
            True,
        )
    if by == lifecycle.SUSPENDED_FOR_PAUSE:
        return Suspension(
            "Your subscription is paused.",
            "Resume it with “Manage payment and invoices” below.",
            True,
        )
    if by == lifecycle.SUSPENDED_FOR_CANCELLATION:
        return Suspension(
            "Your subscription was cancelled. Your mail is kept for a while, then removed.",
            "To keep your server, contact your provider before then.",
            False,
        )
    return Suspension(
        "Your provider suspended it.",
        "Contact your provider to find out why and to start it again.",
        False,
    )


@dataclass(frozen=True)
class Choice:
    name: str
    display_name: str
    current: bool
    mailboxes: int
    domains: int
    storage: str


def choices(plans: list[JSON], current: str) -> list[Choice]:
    """The plans one can buy (a Stripe price), the current one marked, by name."""
    out = []
    for obj in plans:
        raw = obj.get("spec") or {}
        plan = parse_plan(raw)
        if plan is None or not plan.stripe_price_id:
            continue
        name = str(obj["metadata"]["name"])
        out.append(
            Choice(
                name=name,
                display_name=plan.display_name or name,
                current=name == current,
                mailboxes=plan.max_mailboxes,
                domains=plan.max_domains,
                storage=human_bytes(_size(plan.storage)),
            )
        )
    return sorted(out, key=lambda c: (c.display_name.lower(), c.name))
