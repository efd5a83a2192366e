"""BackupHealthy and lastBackup on a server: is its newest backup as recent as its plan says?"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import API_VERSION, naming
from ..clients.kube import Kube
from ..conditions import Cond, set_condition, timestamp
from ..models.plan import MailPlanSpec
from . import cron

BACKUP_HEALTHY = "BackupHealthy"
PMS = "PersonalMailServer"


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def check(
    plan: MailPlanSpec | None,
    *,
    last_completed: dt.datetime | None,
    created: dt.datetime,
    now: dt.datetime,
    grace: dt.timedelta,
) -> Cond:
    """BackupHealthy: the backup due a grace period ago has completed (pure)."""
    if plan is None:
        return Cond(BACKUP_HEALTHY, False, "PlanNotFound", "the server's plan does not exist")
    if not plan.backup.enabled:
        if last_completed is None:
            return Cond(BACKUP_HEALTHY, True, "BackupsOff", "the plan takes no scheduled backups")
        return Cond(
            BACKUP_HEALTHY,
            True,
            "BackupsOff",
            f"the plan takes no scheduled backups; the last was at {timestamp(last_completed)}",
        )
    try:
        schedule = cron.parse(plan.backup.schedule)
    except cron.CronError as e:
        return Cond(
            BACKUP_HEALTHY, False, "InvalidSchedule", f"the plan's backup.schedule is invalid: {e}"
        )
    due = cron.previous_fire(schedule, now - grace)
    if due is None or due < created:
        return Cond(
            BACKUP_HEALTHY, True, "NoBackupDueYet", "the server's first scheduled backup is ahead"
        )
    if last_completed is not None and last_completed >= due:
        return Cond(
            BACKUP_HEALTHY, True, "BackupCurrent", f"last backup at {timestamp(last_completed)}"
        )
    last = f"the last was at {timestamp(last_completed)}" if last_completed else "there is none"
    return Cond(
        BACKUP_HEALTHY,
        False,
        "BackupMissed",
        f"the backup due at {timestamp(due)} has not completed ({last}): see "
        f"kubectl get mailbackups -l {naming.LABEL_SERVER}",
    )


def write(
    kube: Kube,
    namespace: str,
    server: str,
    *,
    now: dt.datetime,
    cond: Cond | None = None,
    last_backup: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Set BackupHealthy and/or lastBackup on the server; (before, after) conditions or None."""
    seen: dict[str, Any] = {}

    def mutate(current: dict[str, Any]) -> dict[str, Any] | None:
        before = current.get("status") or {}
        seen["before"] = before
        if not before.get("conditions"):
            return None  # not reconciled yet: its first reconcile writes the status
        new = dict(before)
        if last_backup is not None:
            old = parse_time((before.get("lastBackup") or {}).get("completedAt"))
            mine = parse_time(last_backup.get("completedAt"))
            if old is None or (mine is not None and mine >= old):
                new["lastBackup"] = last_backup
        if cond is not None:
            new["conditions"] = set_condition(
                before.get("conditions", []),
                cond,
                generation=int(current["metadata"].get("generation", 1)),
                now=now,
            )
        return None if new == before else new

    written = kube.update_status(API_VERSION, PMS, namespace, server, mutate)
    if written is None:
        return None
    return seen.get("before") or {}, written.get("status") or {}


def forgotten(backups: list[dict[str, Any]], server: str, remaining: tuple[str, ...]) -> list[str]:
    """The scheduled, completed MailBackups of `server` whose snapshot retention removed."""
    if not remaining:
        return []  # no list: never guess
    out = []
    for backup in backups:
        spec, status = backup.get("spec") or {}, backup.get("status") or {}
        snapshot = str(status.get("snapshotId") or "")
        if spec.get("server") != server or spec.get("trigger") != "Schedule" or not snapshot:
            continue
        if status.get("phase") == "Completed" and not any(
            s.startswith(snapshot) or snapshot.startswith(s) for s in remaining
        ):
            out.append(str(backup["metadata"]["name"]))
    return out


def drop_forgotten(kube: Kube, namespace: str, server: str, remaining: tuple[str, ...]) -> int:
    """Delete the MailBackups whose snapshots the plan's retention forgot."""
    names = forgotten(kube.list(API_VERSION, "MailBackup", namespace), server, remaining)
    for name in names:
        kube.delete(API_VERSION, "MailBackup", namespace, name)
    return len(names)
