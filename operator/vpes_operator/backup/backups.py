"""A MailBackup from request to snapshot: Pending → Running → Completed or Failed.

`advance` is called again and again (on creation, on a timer, after a
restart) and does the next step from what it observes; every step is
idempotent, so an operator killed at any point picks up where it was.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .. import API_VERSION, naming
from ..clients.kube import JSON, Kube
from ..clients.status import status_wire
from ..conditions import Cond, Event, at_second, set_condition
from ..errors import ConfigError, ReconcileError, WaitingError
from ..models.backup import BackupPhase, BackupTrigger, MailBackup, MailBackupStatus
from ..models.common import ObjectMeta
from ..models.conditions import ConditionType, Reason
from ..models.kube import Pod, Secret
from ..models.plan import MailPlan, MailPlanSpec
from ..models.restore import MailRestore, MailRestoreStatus
from ..models.server import PersonalMailServer
from ..settings import OperatorSettings
from . import access, jobs, runner, store
from . import repository as repo
from .jobs import JobSpec
from .repository import Repository
from .results import JobResult

KIND = "MailBackup"
PMS = "PersonalMailServer"
TERMINAL = (BackupPhase.COMPLETED.value, BackupPhase.FAILED.value)
SCHEDULE_TAG = "trigger=schedule"


# The status of a MailBackup or a MailRestore: what a step sets of it.
RequestStatus = MailBackupStatus | MailRestoreStatus
# A MailBackup or a MailRestore, as read.
RequestObject = MailBackup | MailRestore


@dataclass
class Step:
    """What one call did: the status fields to set (those set on `status`), and events
    worth posting."""

    status: RequestStatus | None = None
    events: list[Event] = field(default_factory=list)
    retry_in: float | None = None
    # A Job whose result is in `status`: removed once the status is written.
    finished_job: str | None = None
    # The snapshots the repository still holds after retention (short ids).
    remaining: tuple[str, ...] = ()

    @property
    def phase(self) -> str | None:
        return self.status.phase if self.status is not None else None


def _tenant_running(kube: Kube, namespace: str, server: str) -> bool:
    return any(
        p.spec.node_name and not p.metadata.deletion_timestamp
        for p in kube.read_list(Pod, namespace, labels=naming.pod_selector(server))
    )


def plan_of(kube: Kube, name: str) -> MailPlanSpec | None:
    plan = kube.read(MailPlan, None, name)
    return plan.spec if plan else None


def _failed(reason: str, message: str, now: dt.datetime, previous: MailBackupStatus) -> Step:
    conditions = set_condition(
        previous.conditions,
        Cond(ConditionType.FAILED, True, reason, message),
        generation=None,
        now=now,
    )
    return Step(
        status=MailBackupStatus(
            phase=BackupPhase.FAILED,
            message=f"{reason}: {message}",
            completed_at=at_second(now),
            conditions=conditions,
        ),
        events=[Event("Warning", reason, message)],
    )


def _start(kube: Kube, settings: OperatorSettings, backup: MailBackup, now: dt.datetime) -> Step:
    meta, spec, status = backup.metadata, backup.spec, backup.status
    namespace = meta.namespace
    server = kube.read(PersonalMailServer, namespace, spec.server)
    if server is None:
        raise ConfigError(
            Reason.SERVER_NOT_FOUND,
            f"there is no PersonalMailServer {spec.server!r} in {namespace}: fix spec.server",
        )
    job_name = repo.job_name(repo.COMPONENT_BACKUP, meta.uid)
    repository = Repository.of(namespace, spec.server, server.metadata.uid)
    other = runner.busy(kube, namespace, spec.server, job_name, repository)
    if other:
        return Step(
            status=MailBackupStatus(
                phase=BackupPhase.PENDING, message=f"waiting for {other} to end"
            ),
            retry_in=10,
        )
    s3 = store.connect(kube, settings)
    reach = access.grant(kube, settings, s3, repository, now, create=True)
    plan = plan_of(kube, server.plan)
    scheduled = spec.trigger == BackupTrigger.SCHEDULE.value
    secret = kube.read(Secret, namespace, naming.credentials_secret(spec.server))
    job_spec = JobSpec(
        request=jobs.Request(API_VERSION, KIND, meta.name, namespace, meta.uid),
        server=spec.server,
        repository=repository,
        action=repo.COMPONENT_BACKUP,
        tags=("vpes", f"trigger={str(spec.trigger).lower()}", f"backup={meta.name}"),
        init=not s3.repository_exists(reach.bucket, repository.prefix(settings)),
        retention=plan.backup.retention if plan is not None and scheduled else None,
        forget_tag=SCHEDULE_TAG if scheduled else "",
        tenant_running=_tenant_running(kube, namespace, spec.server),
        objects=jobs.objects_of(server, secret),
    )
    runner.start(kube, settings, job_spec, reach)
    return Step(
        status=MailBackupStatus(
            phase=BackupPhase.RUNNING,
            message=f"Job {job_name} is backing up the volume of {spec.server}",
            job=job_name,
            repository=repository.path,
            started_at=status.started_at or at_second(now),
        ),
        events=[Event("Normal", Reason.STARTED, f"Job {job_name} started")],
        retry_in=5,
    )


def _record(status: MailBackupStatus, result: JobResult, now: dt.datetime) -> Step:
    conditions = set_condition(
        status.conditions,
        Cond(ConditionType.COMPLETED, True, Reason.SNAPSHOT_TAKEN, f"snapshot {result.snapshot}"),
        generation=None,
        now=now,
    )
    message = f"snapshot {result.snapshot}: {result.files} files, {result.total_bytes} bytes"
    if result.retention and result.retention != "ok":
        message += f"; retention not applied ({result.retention})"
    return Step(
        remaining=result.snapshots,
        status=MailBackupStatus(
            phase=BackupPhase.COMPLETED,
            message=message,
            snapshot_id=result.snapshot,
            files=result.files,
            total_bytes=result.total_bytes,
            size_bytes=result.added_bytes,
            completed_at=at_second(now),
            conditions=conditions,
        ),
        events=[Event("Normal", Reason.COMPLETED, message)],
    )


def advance(kube: Kube, settings: OperatorSettings, backup: MailBackup, now: dt.datetime) -> Step:
    status = backup.status
    phase = status.phase
    if phase in TERMINAL:
        return Step()
    try:
        if phase != BackupPhase.RUNNING:
            return _start(kube, settings, backup, now)
        meta = backup.metadata
        job_name = status.job or repo.job_name(repo.COMPONENT_BACKUP, meta.uid)
        result = runner.outcome(kube, meta.namespace, job_name)
        if result is None:
            return Step(retry_in=5)
        step = (
            _record(status, result, now)
            if result.ok
            else _failed(result.reason, result.message, now, status)
        )
        step.finished_job = job_name
        return step
    except WaitingError as e:
        message = f"{e.reason}: {e}"
        return Step(
            status=MailBackupStatus(phase=phase or BackupPhase.PENDING, message=message),
            # One event when the wait starts, not one per retry.
            events=[] if status.message == message else [Event("Warning", e.reason, e.message)],
            retry_in=e.delay,
        )
    except ReconcileError as e:
        return _failed(e.reason, e.message, now, status)


def write_status(kube: Kube, terminal: tuple[str, ...], request: RequestObject, step: Step) -> None:
    """Merge the step's fields into the request's status, unless it already ended."""
    if step.status is None:
        return
    meta: ObjectMeta = request.metadata
    view = type(request)
    fields = {k: getattr(step.status, k) for k in step.status.model_fields_set}
    update = {k: v for k, v in fields.items() if v is not None}

    def mutate(current: JSON) -> JSON | None:
        before = view.model_validate(current).status
        if before.phase in terminal:
            return None
        new = before.model_copy(update=update)
        return None if new == before else status_wire(new)

    kube.update_status(view.API_VERSION, view.KIND, meta.namespace, meta.name, mutate)
    if step.finished_job:
        runner.finish(kube, meta.namespace, step.finished_job)


def write(kube: Kube, backup: MailBackup, step: Step) -> None:
    write_status(kube, TERMINAL, backup, step)
