"""BackupHealthy and lastBackup on a server: is its newest backup as recent as its plan says?"""

from __future__ import annotations

import datetime as dt

from .. import naming
from ..clients.kube import Kube
from ..clients.status import Written, update_server_status
from ..conditions import Cond, set_condition, timestamp
from ..models.backup import BackupTrigger, MailBackup, RequestPhase
from ..models.conditions import ConditionType, Reason
from ..models.plan import MailPlanSpec
from ..models.server import BackupRef, PersonalMailServer, PersonalMailServerStatus
from . import cron

BACKUP_HEALTHY = ConditionType.BACKUP_HEALTHY


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
        return Cond(
            BACKUP_HEALTHY, False, Reason.PLAN_NOT_FOUND, "the server's plan does not exist"
        )
    if not plan.backup.enabled:
        if last_completed is None:
            return Cond(
                BACKUP_HEALTHY, True, Reason.BACKUPS_OFF, "the plan takes no scheduled backups"
            )
        return Cond(
            BACKUP_HEALTHY,
            True,
            Reason.BACKUPS_OFF,
            f"the plan takes no scheduled backups; the last was at {timestamp(last_completed)}",
        )
    try:
        schedule = cron.parse(plan.backup.schedule)
    except cron.CronError as e:
        return Cond(
            BACKUP_HEALTHY,
            False,
            Reason.INVALID_SCHEDULE,
            f"the plan's backup.schedule is invalid: {e}",
        )
    due = cron.previous_fire(schedule, now - grace)
    if due is None or due < created:
        return Cond(
            BACKUP_HEALTHY,
            True,
            Reason.NO_BACKUP_DUE_YET,
            "the server's first scheduled backup is ahead",
        )
    if last_completed is not None and last_completed >= due:
        return Cond(
            BACKUP_HEALTHY,
            True,
            Reason.BACKUP_CURRENT,
            f"last backup at {timestamp(last_completed)}",
        )
    last = f"the last was at {timestamp(last_completed)}" if last_completed else "there is none"
    return Cond(
        BACKUP_HEALTHY,
        False,
        Reason.BACKUP_MISSED,
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
    last_backup: BackupRef | None = None,
) -> Written:
    """Set BackupHealthy and/or lastBackup on the server."""

    def mutate(current: PersonalMailServer) -> PersonalMailServerStatus | None:
        before = current.status
        if not before.conditions:
            return None  # not reconciled yet: its first reconcile writes the status
        update: dict[str, object] = {}
        if last_backup is not None:
            old = before.last_backup.completed_at if before.last_backup else None
            mine = last_backup.completed_at
            if old is None or (mine is not None and mine >= old):
                update["last_backup"] = last_backup
        if cond is not None:
            update["conditions"] = set_condition(
                before.conditions,
                cond,
                generation=current.generation,
                now=now,
            )
        return before.model_copy(update=update)

    return update_server_status(kube, namespace, server, mutate)


def forgotten(backups: list[MailBackup], server: str, remaining: tuple[str, ...]) -> list[str]:
    """The scheduled, completed MailBackups of `server` whose snapshot retention removed."""
    if not remaining:
        return []  # no list: never guess
    out = []
    for backup in backups:
        spec, status = backup.spec, backup.status
        snapshot = status.snapshot_id or ""
        if spec.server != server or spec.trigger != BackupTrigger.SCHEDULE or not snapshot:
            continue
        if status.phase == RequestPhase.COMPLETED and not any(
            s.startswith(snapshot) or snapshot.startswith(s) for s in remaining
        ):
            out.append(backup.metadata.name)
    return out


def drop_forgotten(kube: Kube, namespace: str, server: str, remaining: tuple[str, ...]) -> int:
    """Delete the MailBackups whose snapshots the plan's retention forgot."""
    names = forgotten(kube.read_list(MailBackup, namespace), server, remaining)
    for name in names:
        kube.delete(MailBackup.API_VERSION, MailBackup.KIND, namespace, name)
    return len(names)
