"""MailBackup and MailRestore handlers, scheduled backups, and the retention sweep.

Requests are advanced by timers that stop once the request reaches a terminal
phase: each tick does the next step from what it observes (no step is
remembered in memory), so a restart continues where the last run stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Coroutine
from typing import Any

import kopf

from .. import GROUP, VERSION, metrics, watched
from ..backup import backups, cron, restores, schedule
from ..builders.meta import server_reference
from ..models.backup import MailBackup, MailBackupStatus, RequestPhase
from ..models.common import ObjectMeta
from ..models.plan import MailPlanSpec
from ..models.restore import MailRestore
from ..models.server import PersonalMailServer
from ..settings import OperatorSettings
from .background import background, repeat
from .events import post

log = logging.getLogger(__name__)
_SETTINGS = OperatorSettings.from_env()  # kopf fixes timer intervals at registration
TICK = _SETTINGS.backup_tick
SCHEDULE_TICK = _SETTINGS.backup_schedule_tick


def _pending(terminal: tuple[str, ...]) -> Any:
    def when(status: kopf.Status, **_: Any) -> bool:
        return status.get("phase") not in terminal

    return when


def _report(body: kopf.Body, step: backups.Step, kind: str, terminal: tuple[str, ...]) -> Any:
    """Post the step's events; count the request's result once it ended. Its phase."""
    post(body, step.events)
    phase = step.phase
    if phase in terminal:
        result = "Completed" if phase == RequestPhase.COMPLETED else step.events[0].reason
        metrics.BACKUP_RESULTS.labels(kind, result).inc()
    return phase


@kopf.timer(
    GROUP, VERSION, "mailbackups", id="advance", interval=TICK, when=_pending(backups.TERMINAL)
)
def backup_timer(body: kopf.Body, memo: Any, **_: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    backup = MailBackup.model_validate(dict(body))
    step = backups.advance(memo.kube, memo.settings, backup, now)
    backups.write(memo.kube, backup, step)
    phase = _report(body, step, "backup", backups.TERMINAL)
    if phase == RequestPhase.COMPLETED:
        _completed(memo, backup, step, now)


def _completed(memo: Any, backup: MailBackup, step: backups.Step, now: dt.datetime) -> None:
    done = step.status
    assert isinstance(done, MailBackupStatus)  # a MailBackup's step
    server, events = schedule.after_backup(
        memo.kube, memo.settings, backup, done, step.remaining, now
    )
    if server is not None:
        post(_reference(server), events)


def _reference(server: PersonalMailServer) -> Any:
    meta = server.metadata
    return server_reference(meta.name, meta.namespace, meta.uid)


@kopf.timer(
    GROUP, VERSION, "mailrestores", id="advance", interval=TICK, when=_pending(restores.TERMINAL)
)
def restore_timer(body: kopf.Body, memo: Any, **_: Any) -> None:
    restore = MailRestore.model_validate(dict(body))
    step = restores.advance(memo.kube, memo.settings, restore, dt.datetime.now(dt.UTC))
    restores.write(memo.kube, restore, step)
    _report(body, step, "restore", restores.TERMINAL)


# One timer per plan (a few), not one per server (thousands): each tick looks at
# the plan's servers from what the watch delivered and calls the API only when a backup is due
# or BackupHealthy changes.
@kopf.timer(GROUP, VERSION, "mailplans", id="backup-schedule", interval=SCHEDULE_TICK)
def schedule_timer(
    name: str,
    spec: kopf.Spec,
    memo: Any,
    **_: Any,
) -> None:
    """Request the backups the plan's schedule says are due; keep BackupHealthy current."""
    servers = watched.BACKUP_VIEW.get(name)
    if not servers:
        return
    plan = MailPlanSpec.model_validate(dict(spec))
    now = dt.datetime.now(dt.UTC)
    period = None
    if plan.backup.enabled:
        with contextlib.suppress(cron.CronError):
            period = cron.interval(cron.parse(plan.backup.schedule), now)
    for server in servers:
        meta = server.metadata
        if period is not None:
            metrics.BACKUP_INTERVAL.labels(meta.namespace, meta.name).set(period.total_seconds())
        try:
            changed = schedule.tick(memo.kube, memo.settings, server, plan, now)
        except Exception:  # one server's trouble never stops the others' schedule
            log.exception("backup schedule of %s/%s failed", meta.namespace, meta.name)
            continue
        post(_reference(server), changed)


def server_deleted(memo: Any, meta: ObjectMeta, logger: kopf.Logger) -> None:
    """Called from the server's delete handler: its backups outlive it for the retention."""
    with contextlib.suppress(KeyError):
        metrics.BACKUP_INTERVAL.remove(meta.namespace, meta.name)
    try:
        outcome = schedule.server_deleted(memo.kube, memo.settings, meta, dt.datetime.now(dt.UTC))
    except Exception as e:  # never hold a deletion for the backups' sake
        logger.error("backups of %s/%s not handled: %s", meta.namespace, meta.name, e)
        return
    logger.info("server %s/%s deleted: %s", meta.namespace, meta.name, outcome)


def _sweep_forever(memo: Any) -> Coroutine[Any, Any, None]:
    """The retention sweep: repositories whose servers' retention ran out go."""
    every = memo.settings.backup_sweep_seconds

    def sweep() -> None:
        schedule.sweep(memo.kube, memo.settings, dt.datetime.now(dt.UTC))

    return repeat(
        sweep,
        every,
        log=log,
        failed="the backup retention sweep failed; it runs again later",
        first=min(60.0, every),
    )


background("backup_sweep", _sweep_forever)
