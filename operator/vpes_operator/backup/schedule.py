"""Scheduled backups and what happens to a server's backups after it is deleted."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from .. import API_VERSION, naming
from ..clients.kube import ApiError, Kube
from ..conditions import Event, find, parse
from ..models.backup import MailBackupStatus
from ..models.plan import MailPlanSpec
from ..models.server import BackupRef
from ..settings import OperatorSettings
from . import access, cron, health, keys, store
from . import repository as repo
from .backups import plan_of
from .repository import Repository

log = logging.getLogger(__name__)
# The scheduled backups this process already requested (or found made): each
# firing is asked for once, not on every tick of its grace period.
_REQUESTED: set[str] = set()


def due_backup(
    plan: MailPlanSpec, created: dt.datetime, now: dt.datetime, grace: dt.timedelta
) -> dt.datetime | None:
    """The firing whose backup should exist now: the latest one, if recent and after creation."""
    if not plan.backup.enabled:
        return None
    try:
        fire = cron.previous_fire(cron.parse(plan.backup.schedule), now)
    except cron.CronError:
        return None  # BackupHealthy says what is wrong
    if fire is None or fire < created or now - fire > grace:
        return None
    return fire


def backup_request(server: dict[str, Any], fire: dt.datetime) -> dict[str, Any]:
    meta = server["metadata"]
    name = repo.scheduled_backup_name(meta["name"], fire.strftime("%Y%m%d%H%M"))
    return {
        "apiVersion": API_VERSION,
        "kind": "MailBackup",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {
                naming.LABEL_SERVER: meta["name"],
                "app.kubernetes.io/managed-by": naming.MANAGED_BY,
            },
        },
        "spec": {"server": meta["name"], "trigger": "Schedule"},
    }


def tick(
    kube: Kube,
    settings: OperatorSettings,
    server: dict[str, Any],
    plan: MailPlanSpec | None,
    now: dt.datetime,
) -> list[Event]:
    """Request the backup that is due, if any; refresh BackupHealthy; the events it deserves."""
    if not settings.backup_s3_bucket:
        return []
    meta, status = server["metadata"], server.get("status") or {}
    created = health.parse_time(meta.get("creationTimestamp")) or now
    grace = dt.timedelta(seconds=settings.backup_grace_seconds)
    if plan is not None and not meta.get("deletionTimestamp"):
        fire = due_backup(plan, created, now, grace)
        request = backup_request(server, fire) if fire is not None else None
        key = f"{meta['namespace']}/{request['metadata']['name']}" if request else ""
        if request is not None and key not in _REQUESTED:
            try:
                kube.create(request)
                log.info("scheduled backup of %s/%s", meta["namespace"], meta["name"])
            except ApiError as e:
                if e.status != 409:
                    raise
            if len(_REQUESTED) > 100_000:
                _REQUESTED.clear()
            _REQUESTED.add(key)
    last = health.parse_time((status.get("lastBackup") or {}).get("completedAt"))
    cond = health.check(plan, last_completed=last, created=created, now=now, grace=grace)
    current = find(parse(status.get("conditions")), health.BACKUP_HEALTHY)
    if current is not None and (current.status, current.reason, current.message) == (
        cond.status_text,
        cond.reason,
        cond.message,
    ):
        return []  # the common tick: nothing changed, no API call
    return health.write(kube, meta["namespace"], meta["name"], now=now, cond=cond).events


def after_backup(
    kube: Kube,
    settings: OperatorSettings,
    backup: dict[str, Any],
    done: MailBackupStatus,
    remaining: tuple[str, ...],
    now: dt.datetime,
) -> tuple[dict[str, Any] | None, list[Event]]:
    """A backup completed: its server shows it as its newest good backup, the backups
    retention forgot go, BackupHealthy is refreshed. The server (None: gone) and the
    events its condition transitions deserve."""
    meta, server = backup["metadata"], str((backup.get("spec") or {}).get("server"))
    record = BackupRef(
        name=meta["name"], completed_at=done.completed_at, snapshot_id=done.snapshot_id
    )
    health.write(kube, meta["namespace"], server, now=now, last_backup=record)
    dropped = health.drop_forgotten(kube, meta["namespace"], server, remaining)
    if dropped:
        log.info("%d backups of %s/%s aged out", dropped, meta["namespace"], server)
    found = kube.get(API_VERSION, "PersonalMailServer", meta["namespace"], server)
    if found is None:
        return None, []
    plan = plan_of(kube, str((found.get("spec") or {}).get("plan")))
    return found, tick(kube, settings, found, plan, now)


def server_deleted(
    kube: Kube, settings: OperatorSettings, server: dict[str, Any], now: dt.datetime
) -> str:
    """Keep the deleted server's backups for the retention period, or remove them now."""
    meta = server["metadata"]
    repository = Repository.of(meta["namespace"], meta["name"], meta["uid"])
    if keys.read(kube, settings, repository) is None:
        return "no backups"
    days = settings.backup_retention_after_delete_days
    if days > 0:
        keys.mark_expiry(kube, settings, repository, now + dt.timedelta(days=days))
        return f"backups kept for {days:g} days"
    remove(kube, settings, repository)
    return "backups removed"


def remove(kube: Kube, settings: OperatorSettings, repository: Repository) -> int:
    """Delete a repository's objects, bucket and identity, then its key (in that order:
    never an unreadable half, never a bucket or identity nothing records)."""
    removed = access.revoke(kube, settings, store.connect(kube, settings), repository)
    for backup in kube.list(API_VERSION, "MailBackup", repository.namespace):
        status = backup.get("status") or {}
        if status.get("repository") == repository.path:
            kube.delete(API_VERSION, "MailBackup", repository.namespace, backup["metadata"]["name"])
    kube.delete("v1", "Secret", settings.operator_namespace, repository.key_secret)
    log.info("removed repository %s (%d objects)", repository.path, removed)
    return removed


def sweep(kube: Kube, settings: OperatorSettings, now: dt.datetime) -> int:
    """Remove every repository whose retention after deletion has run out."""
    if not settings.backup_s3_bucket:
        return 0
    done = 0
    for repository in keys.expired(kube, settings, now):
        try:
            remove(kube, settings, repository)
            done += 1
        except Exception:  # one failing repository must not stop the others
            log.exception("could not remove repository %s", repository.path)
    return done
