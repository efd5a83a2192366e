"""Scheduled backups and what happens to a server's backups after it is deleted."""

from __future__ import annotations

import datetime as dt
import logging

from .. import API_VERSION, naming
from ..clients.kube import JSON, ApiError, Kube
from ..conditions import Event, find
from ..models.backup import MailBackup, MailBackupStatus
from ..models.common import ObjectMeta
from ..models.plan import MailPlanSpec
from ..models.server import BackupRef, PersonalMailServer
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


def backup_request(server: ObjectMeta, fire: dt.datetime) -> JSON:
    """The scheduled MailBackup of `server` (its metadata) for the firing at `fire`."""
    name = repo.scheduled_backup_name(server.name, fire.strftime("%Y%m%d%H%M"))
    return {
        "apiVersion": API_VERSION,
        "kind": "MailBackup",
        "metadata": {
            "name": name,
            "namespace": server.namespace,
            "labels": {
                naming.LABEL_SERVER: server.name,
                "app.kubernetes.io/managed-by": naming.MANAGED_BY,
            },
        },
        "spec": {"server": server.name, "trigger": "Schedule"},
    }


def tick(
    kube: Kube,
    settings: OperatorSettings,
    server: PersonalMailServer,
    plan: MailPlanSpec | None,
    now: dt.datetime,
) -> list[Event]:
    """Request the backup that is due, if any; refresh BackupHealthy; the events it deserves."""
    if not settings.backup_s3_bucket:
        return []
    meta, status = server.metadata, server.status
    created = meta.creation_timestamp or now
    grace = dt.timedelta(seconds=settings.backup_grace_seconds)
    if plan is not None and not meta.deletion_timestamp:
        fire = due_backup(plan, created, now, grace)
        request = backup_request(meta, fire) if fire is not None else None
        key = f"{meta.namespace}/{request['metadata']['name']}" if request else ""
        if request is not None and key not in _REQUESTED:
            try:
                kube.create(request)
                log.info("scheduled backup of %s/%s", meta.namespace, meta.name)
            except ApiError as e:
                if e.status != 409:
                    raise
            if len(_REQUESTED) > 100_000:
                _REQUESTED.clear()
            _REQUESTED.add(key)
    last = status.last_backup.completed_at if status.last_backup else None
    cond = health.check(plan, last_completed=last, created=created, now=now, grace=grace)
    current = find(status.conditions, health.BACKUP_HEALTHY)
    if current is not None and (current.status, current.reason, current.message) == (
        cond.status_text,
        cond.reason,
        cond.message,
    ):
        return []  # the common tick: nothing changed, no API call
    return health.write(kube, meta.namespace, meta.name, now=now, cond=cond).events


def after_backup(
    kube: Kube,
    settings: OperatorSettings,
    backup: MailBackup,
    done: MailBackupStatus,
    remaining: tuple[str, ...],
    now: dt.datetime,
) -> tuple[PersonalMailServer | None, list[Event]]:
    """A backup completed: its server shows it as its newest good backup, the backups
    retention forgot go, BackupHealthy is refreshed. The server (None: gone) and the
    events its condition transitions deserve."""
    meta, server = backup.metadata, backup.spec.server
    record = BackupRef(name=meta.name, completed_at=done.completed_at, snapshot_id=done.snapshot_id)
    health.write(kube, meta.namespace, server, now=now, last_backup=record)
    dropped = health.drop_forgotten(kube, meta.namespace, server, remaining)
    if dropped:
        log.info("%d backups of %s/%s aged out", dropped, meta.namespace, server)
    found = kube.read(PersonalMailServer, meta.namespace, server)
    if found is None:
        return None, []
    plan = plan_of(kube, found.plan)
    return found, tick(kube, settings, found, plan, now)


def server_deleted(
    kube: Kube, settings: OperatorSettings, server: ObjectMeta, now: dt.datetime
) -> str:
    """Keep the deleted server's (its metadata) backups for the retention period, or
    remove them now."""
    repository = Repository.of(server.namespace, server.name, server.uid)
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
    for backup in kube.read_list(MailBackup, repository.namespace):
        if backup.status.repository == repository.path:
            kube.delete(API_VERSION, MailBackup.KIND, repository.namespace, backup.metadata.name)
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
