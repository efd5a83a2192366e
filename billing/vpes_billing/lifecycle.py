"""What a server should look like, given what Stripe says about its subscription now.

Pure: (subscription state, the server's billing marks, now) → desired state. It
never looks at which event arrived, so a replayed, late or reordered event
yields the same result as the newest one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from vpes_operator.models.backup import RequestPhase

from . import naming as n
from .stripe_gateway import ACTIVE, DELINQUENT, ENDED, SubscriptionState

SUSPENDED_FOR_PAYMENT = "payment"
SUSPENDED_FOR_CANCELLATION = "cancellation"
SUSPENDED_FOR_PAUSE = "paused"
SUSPENDED_FOR_INCOMPLETE = "incomplete"
INCOMPLETE = "incomplete"


def stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_stamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Desired:
    suspended: bool
    annotations: dict[str, str] = field(default_factory=dict)
    final_backup: bool = False
    delete: bool = False
    revisit_at: float | None = None  # when a sweep must look again (grace or retention ends)


def decide(
    sub: SubscriptionState,
    marks: dict[str, str],
    now: float,
    *,
    grace_seconds: float,
    retention_seconds: float,
) -> Desired:
    """`marks` are the server's current billing annotations (naming.ANNOTATION_*)."""
    notes = {n.ANNOTATION_STATUS: sub.status}
    if sub.price_id:
        notes[n.ANNOTATION_PRICE] = sub.price_id
    if sub.status in ACTIVE:
        return Desired(suspended=False, annotations=notes)
    if sub.status in DELINQUENT:
        failed = parse_stamp(marks.get(n.ANNOTATION_PAYMENT_FAILED_AT)) or now
        notes[n.ANNOTATION_PAYMENT_FAILED_AT] = stamp(failed)
        if now - failed >= grace_seconds:
            notes[n.ANNOTATION_SUSPENDED_BY] = SUSPENDED_FOR_PAYMENT
            return Desired(suspended=True, annotations=notes)
        return Desired(suspended=False, annotations=notes, revisit_at=failed + grace_seconds)
    if sub.status in ENDED:
        cancelled = parse_stamp(marks.get(n.ANNOTATION_CANCELLED_AT)) or now
        notes[n.ANNOTATION_CANCELLED_AT] = stamp(cancelled)
        notes[n.ANNOTATION_SUSPENDED_BY] = SUSPENDED_FOR_CANCELLATION
        expired = now - cancelled >= retention_seconds
        return Desired(
            suspended=True,
            annotations=notes,
            final_backup=True,
            delete=expired,
            revisit_at=None if expired else cancelled + retention_seconds,
        )
    if sub.status == "paused":
        notes[n.ANNOTATION_SUSPENDED_BY] = SUSPENDED_FOR_PAUSE
        return Desired(suspended=True, annotations=notes)
    if sub.status == INCOMPLETE:
        # The first payment has not gone through (yet): no running server until it has.
        notes[n.ANNOTATION_SUSPENDED_BY] = SUSPENDED_FOR_INCOMPLETE
        return Desired(suspended=True, annotations=notes)
    # A status this code does not know: keep what there is.
    suspended_by = marks.get(n.ANNOTATION_SUSPENDED_BY)
    if suspended_by:
        notes[n.ANNOTATION_SUSPENDED_BY] = suspended_by
    return Desired(suspended=bool(suspended_by), annotations=notes)


class Removal(StrEnum):
    REMOVE = "remove"  # the final backup Completed
    WAIT = "wait"  # keep the namespace: the final backup has not Completed
    GIVE_UP = "give-up"  # waited `wait_seconds` past the retention period: remove anyway


def removal(final_backup_phase: str | None, overdue_seconds: float, wait_seconds: float) -> Removal:
    """Whether a cancelled customer's namespace may go, once the retention period is over.

    Only a Completed final backup lets it go at once. Pending, Running, Failed or no
    phase at all keep it, for at most `wait_seconds` past the retention period
    (`overdue_seconds`): a Failed backup is not taken again by itself, and deleting
    the namespace would delete the only copy of the mail.
    """
    if final_backup_phase == RequestPhase.COMPLETED:
        return Removal.REMOVE
    if overdue_seconds >= wait_seconds:
        return Removal.GIVE_UP
    return Removal.WAIT
