"""A server's storage, as pure functions: the reserve Postfix keeps free, the
usage report a tenant writes, and the StorageHealthy condition.

Mail, Dovecot's indexes and Postfix's queue share one volume. What happens as
it fills:

- Below ``reserve_bytes`` of free space, Postfix answers ``452 4.3.1
  Insufficient system storage`` to new mail (``queue_minfree``): senders (the
  edge) keep it and retry. The reserve is what mail already queued needs to
  reach its mailbox and what Dovecot needs for its indexes (so that a person
  can still log in and delete mail).
- Should the volume fill anyway (a burst of parallel messages, an IMAP
  upload), a message being received gets ``451`` (Postfix's cleanup removes its
  partial queue file) and a delivery that hits the end of the disk is
  temp-failed by Dovecot's LMTP (``quota_full_tempfail``: ``452``), so Postfix
  keeps the message queued and retries: deferred, never bounced, never half
  stored.

The report (``images/tenant/vpes-usage``, served on ``layout.USAGE_PORT``)::

    vpes-usage 1
    volume <block size> <blocks> <free blocks> <available blocks> <inodes> <free inodes>
    mailbox <address> <bytes> <messages>      (one per mailbox with a maildirsize)
    package <name> <version>                  (one per Debian package of the image)
    end

The `package` lines are the list the image recorded when it was built (none from an
image built before images recorded them); fleet upgrades compare two images' lists
(``fleet.packages``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .conditions import Cond
from .fleet.packages import PackageError, parse_package
from .models.conditions import ConditionType, Reason
from .models.server import MailboxUsage, Usage
from .quantity import QuantityError, parse_bytes

STORAGE_HEALTHY = ConditionType.STORAGE_HEALTHY
# Free space kept for the queue and the indexes: at least this share of the volume...
RESERVE_DIVISOR = 20  # 5 %
# ... and at least twice the largest message (Postfix wants 1.5 times at least).
RESERVE_MESSAGES = 2
# The largest report read from a tenant (1,000 mailboxes take about 60 KiB).
MAX_REPORT_BYTES = 1 << 20


class ReportError(ValueError):
    """A tenant's usage report that cannot be read."""


def reserve_bytes(storage_bytes: int, message_size_limit: int) -> int:
    """The free space below which Postfix refuses new mail (its ``queue_minfree``)."""
    return max(RESERVE_MESSAGES * message_size_limit, storage_bytes // RESERVE_DIVISOR)


def reserve_problem(storage_bytes: int, message_size_limit: int) -> str | None:
    """Why a plan's volume and message size cannot work together, or None."""
    reserve = reserve_bytes(storage_bytes, message_size_limit)
    if 2 * reserve > storage_bytes:
        return (
            f"the plan's maxMessageSize ({message_size_limit} bytes) is too large for its "
            f"volume ({storage_bytes} bytes): {RESERVE_MESSAGES} of the largest messages are "
            "kept free for the queue, which must be at most half the volume; raise the "
            "plan's storage or lower its maxMessageSize"
        )
    return None


@dataclass(frozen=True)
class Volume:
    """A file system's statfs, in bytes."""

    capacity: int
    free: int  # to root
    available: int  # to the daemons (what Postfix and Dovecot can use)
    inodes: int
    free_inodes: int

    @property
    def used(self) -> int:
        return self.capacity - self.free


@dataclass(frozen=True)
class Report:
    volume: Volume
    mailboxes: Mapping[str, tuple[int, int]]  # address → (bytes, messages)
    packages: Mapping[str, str] = field(default_factory=dict)  # Debian package → version


_ADDRESS_RE = re.compile(r"[a-z0-9._+-]{1,64}@[a-z0-9.-]{1,253}")


def parse_report(text: str) -> Report:
    """A tenant's report (the module's docstring says its lines), checked."""
    lines = text.splitlines()
    if not lines or lines[0] != "vpes-usage 1":
        raise ReportError("not a vpes-usage 1 report")
    if lines[-1] != "end":
        raise ReportError("the report was cut short")
    volume: Volume | None = None
    boxes: dict[str, tuple[int, int]] = {}
    packages: dict[str, str] = {}
    for line in lines[1:-1]:
        kind, *fields = line.split()
        if kind == "volume" and len(fields) == 6:
            size, blocks, free, avail, files, ffree = _naturals(fields)
            volume = Volume(size * blocks, size * free, size * avail, files, ffree)
        elif kind == "mailbox" and len(fields) == 3 and _ADDRESS_RE.fullmatch(fields[0]):
            # Maildir++ sums can dip below 0 for a moment (a recalculation is due).
            used, messages = (max(0, _integer(f)) for f in fields[1:])
            boxes[fields[0]] = (used, messages)
        elif kind == "package":
            try:
                name, version = parse_package(fields)
            except PackageError as e:
                raise ReportError(str(e)) from e
            packages[name] = version
        else:
            raise ReportError(f"unexpected line {line[:80]!r}")
    if volume is None or volume.capacity <= 0:
        raise ReportError("the report has no volume line")
    return Report(volume, boxes, packages)


def _integer(text: str) -> int:
    if not re.fullmatch(r"-?[0-9]{1,20}", text):
        raise ReportError(f"{text[:30]!r} is not a number")
    return int(text)


def _naturals(fields: Iterable[str]) -> list[int]:
    values = [_integer(f) for f in fields]
    if any(v < 0 for v in values):
        raise ReportError("a negative size")
    return values


def measured(base: Usage, report: Report, quotas: Mapping[str, int], at: dt.datetime) -> Usage:
    """``base`` (what the spec says) with the measured figures of ``report``.

    Mailboxes are those of ``quotas`` (address → quota bytes): a directory
    left by a removed mailbox counts in the volume, not in the list.
    """
    boxes = [
        MailboxUsage(
            address=address,
            quota_bytes=quota,
            used_bytes=report.mailboxes[address][0] if address in report.mailboxes else None,
            messages=report.mailboxes[address][1] if address in report.mailboxes else None,
        )
        for address, quota in sorted(quotas.items())
    ]
    return base.model_copy(
        update={
            "storage_used_bytes": report.volume.used,
            "storage_capacity_bytes": report.volume.capacity,
            "storage_available_bytes": report.volume.available,
            "measured_at": at.astimezone(dt.UTC).replace(microsecond=0),
            "mailbox_usage": boxes,
        }
    )


def keep_measured(new: Usage, previous: Usage | None) -> Usage:
    """A reconcile's usage (counts, quotas) keeps what was last measured."""
    if previous is None or previous.measured_at is None:
        return new
    quotas = {b.address: b.quota_bytes for b in new.mailbox_usage}
    before = {b.address: b for b in previous.mailbox_usage}
    boxes = [
        before[a].model_copy(update={"quota_bytes": q})
        if a in before
        else MailboxUsage(address=a, quota_bytes=q)
        for a, q in sorted(quotas.items())
    ]
    return new.model_copy(
        update={
            "storage_used_bytes": previous.storage_used_bytes,
            "storage_capacity_bytes": previous.storage_capacity_bytes,
            "storage_available_bytes": previous.storage_available_bytes,
            "measured_at": previous.measured_at,
            "mailbox_usage": boxes,
        }
    )


@dataclass(frozen=True)
class Limits:
    """What the condition compares the figures with."""

    warning_percent: float  # of the capacity used
    reserve: int  # bytes Postfix keeps free (0: unknown)
    stale_after: dt.timedelta  # a measurement older than this is not trusted


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n < (10 << 30) else f"{n / (1 << 30):.1f} GiB"


def _requested(text: str | None) -> int:
    try:
        return parse_bytes(text) if text else 0
    except QuantityError:
        return 0


def _largest(usage: Usage, count: int = 3) -> str:
    """The mailboxes that take the most room: where space can be freed."""
    boxes = sorted(
        (b for b in usage.mailbox_usage if b.used_bytes),
        key=lambda b: (-(b.used_bytes or 0), b.address),
    )[:count]
    if not boxes:
        return ""
    listed = ", ".join(f"{b.address} {_mib(b.used_bytes or 0)}" for b in boxes)
    return f" (largest mailboxes: {listed})"


def condition(usage: Usage, limits: Limits, *, now: dt.datetime) -> Cond:
    """StorageHealthy: the first of full, nearly full, overcommitted, unmeasured."""
    cap, used = usage.storage_capacity_bytes, usage.storage_used_bytes
    fresh = usage.measured_at is not None and now - usage.measured_at <= limits.stale_after
    committed = usage.quota_committed_bytes or 0
    size = cap or _requested(usage.storage_requested)
    over = committed > size > 0
    overcommit = (
        f"the mailboxes' quotas add up to {_mib(committed)}, more than the {_mib(size)} "
        "volume: they cannot all fill up; raise the plan's storage or lower quotas"
    )
    if fresh and cap and used is not None:
        avail = usage.storage_available_bytes if usage.storage_available_bytes is not None else 0
        percent = 100.0 * used / cap
        where = f"{_mib(used)} of {_mib(cap)} used ({percent:.0f}%)"
        also = _largest(usage) + (f"; also, {overcommit}" if over else "")
        if avail <= limits.reserve:
            return Cond(
                STORAGE_HEALTHY,
                False,
                Reason.VOLUME_FULL,
                f"the mail volume is full: {where}, {_mib(avail)} free, under the "
                f"{_mib(limits.reserve)} reserve: new mail is deferred (452) until space is "
                f"freed (delete mail, lower quotas) or the volume grows{also}",
            )
        if percent >= limits.warning_percent:
            return Cond(
                STORAGE_HEALTHY,
                False,
                Reason.VOLUME_NEARLY_FULL,
                f"the mail volume is nearly full: {where}; at {_mib(limits.reserve)} free new "
                f"mail is deferred: free space or move the server to a larger plan{also}",
            )
    if over:
        return Cond(STORAGE_HEALTHY, False, Reason.QUOTAS_OVERCOMMITTED, overcommit)
    if not fresh or cap is None or used is None:
        return Cond(
            STORAGE_HEALTHY,
            False,
            Reason.USAGE_UNKNOWN,
            "the mail volume's usage has not been measured lately (the pod is not running, "
            "or did not answer); the quotas fit in the volume",
        )
    return Cond(
        STORAGE_HEALTHY,
        True,
        Reason.STORAGE_AVAILABLE,
        f"{_mib(used)} of {_mib(cap)} used ({100.0 * used / cap:.0f}%); the quotas fit",
    )
