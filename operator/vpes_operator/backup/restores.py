"""A MailRestore: a server (the backed-up one or a new one) gets a backup's mail back.

Into a new server: its spec and credentials (DKIM keys, password hashes) come
from the snapshot, so its DNS and its users' passwords stay as they were. The
target is held stopped (replicas 0, phase Restoring) while the Job writes its
volume; a volume that already holds mail is refused unless spec.overwrite.
"""

from __future__ import annotations

import datetime as dt
import json

from .. import API_VERSION, naming
from ..builders.meta import metadata, owner_of
from ..clients.kube import JSON, ApiError, Kube
from ..conditions import Cond, Event, at_second, set_condition
from ..errors import ConfigError, ReconcileError, WaitingError
from ..models.backup import MailBackup, MailBackupStatus, RequestPhase
from ..models.conditions import ConditionType, Reason
from ..models.kube import PersistentVolumeClaim, Pod, StatefulSet
from ..models.restore import MailRestore, MailRestoreSpec, MailRestoreStatus, RestorePhase
from ..models.server import PersonalMailServer
from ..quantity import parse_bytes
from ..settings import OperatorSettings
from . import access, restic, runner, store
from . import repository as repo
from .backups import RequestStatus, Step, plan_of, write_status
from .jobs import JobSpec, Request
from .repository import Repository

KIND = "MailRestore"
PMS = "PersonalMailServer"
TERMINAL = (RestorePhase.COMPLETED.value, RestorePhase.FAILED.value)


def _backup(kube: Kube, namespace: str, name: str) -> MailBackupStatus:
    """The status of the completed MailBackup `name`."""
    backup = kube.read(MailBackup, namespace, name)
    if backup is None:
        raise ConfigError(
            Reason.BACKUP_NOT_FOUND, f"there is no MailBackup {name!r} in {namespace}"
        )
    status = backup.status
    if status.phase == RequestPhase.FAILED:
        raise ConfigError(
            Reason.BACKUP_NOT_USABLE, f"MailBackup {name} failed; choose another backup"
        )
    if status.phase != RequestPhase.COMPLETED or not status.snapshot_id:
        raise WaitingError(
            Reason.BACKUP_NOT_READY, f"MailBackup {name} has not completed yet", delay=10
        )
    return status


def _new_server(
    kube: Kube,
    settings: OperatorSettings,
    namespace: str,
    target: str,
    restore_name: str,
    repository: Repository,
    snapshot: str,
    reach: access.Access,
) -> None:
    """Create the target from the snapshot's objects, held for the restore."""

    def read(name: str) -> JSON:
        raw = restic.dump(settings, repository, reach, snapshot, f"{repo.OBJECTS_PATH}/{name}")
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ConfigError(
                Reason.BACKUP_INVALID, f"{name} in snapshot {snapshot} is not an object"
            )
        return doc

    server = read(repo.OBJECT_SERVER)
    meta_in = server.get("metadata")
    labels = dict((meta_in.get("labels") or {}) if isinstance(meta_in, dict) else {})
    spec = server.get("spec") or {}
    body = {
        "apiVersion": API_VERSION,
        "kind": PMS,
        "metadata": {
            "name": target,
            "namespace": namespace,
            "labels": labels,
            "annotations": {repo.ANNOTATION_RESTORE: restore_name},
        },
        "spec": spec,
    }
    try:
        created = kube.create(body)
    except ApiError as e:
        if e.status == 409:
            return  # made by an earlier attempt of this restore
        raise ConfigError(
            Reason.SERVER_INVALID, f"the backed-up server cannot be created again: {e.message}"
        ) from e
    creds = read(repo.OBJECT_CREDENTIALS)
    owner = owner_of(PersonalMailServer.model_validate(created))
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(owner, naming.credentials_secret(target)),
            "type": "Opaque",
            "data": creds.get("data") or {},
        }
    )


def _hold(kube: Kube, server: PersonalMailServer, restore_name: str) -> None:
    holder = server.metadata.annotations.get(repo.ANNOTATION_RESTORE)
    if holder == restore_name:
        return
    if holder:
        raise WaitingError(
            Reason.RESTORE_IN_PROGRESS, f"MailRestore {holder} is restoring it", delay=15
        )
    kube.patch_metadata(
        API_VERSION,
        PMS,
        server.metadata.namespace,
        server.metadata.name,
        {"annotations": {repo.ANNOTATION_RESTORE: restore_name}},
    )


def release(kube: Kube, namespace: str, target: str, restore_name: str) -> None:
    server = kube.read(PersonalMailServer, namespace, target)
    if server is None:
        return
    if server.metadata.annotations.get(repo.ANNOTATION_RESTORE) == restore_name:
        kube.patch_metadata(
            API_VERSION, PMS, namespace, target, {"annotations": {repo.ANNOTATION_RESTORE: None}}
        )


def _stopped(kube: Kube, namespace: str, target: str) -> bool:
    sts = kube.read(StatefulSet, namespace, naming.statefulset(target))
    if sts is None or sts.spec.replicas != 0:
        return False
    return not kube.read_list(Pod, namespace, labels=naming.pod_selector(target))


def _source(spec: MailRestoreSpec, backup: MailBackupStatus) -> tuple[Repository, str]:
    """The repository and snapshot the completed MailBackup names."""
    try:
        repository = Repository.parse(backup.repository or "")
    except ValueError as e:
        raise ConfigError(Reason.BACKUP_INVALID, f"MailBackup {spec.backup}: {e}") from e
    return repository, str(backup.snapshot_id)


def _check_fits(kube: Kube, spec: MailRestoreSpec, target: PersonalMailServer, needed: int) -> None:
    """The target's plan must hold the backed-up mail."""
    plan = plan_of(kube, target.plan)
    if plan is not None and needed > parse_bytes(plan.storage):
        raise ConfigError(
            Reason.TARGET_TOO_SMALL,
            f"the backup holds {needed} bytes of mail but plan {target.plan!r} gives "
            f"{plan.storage}: move {spec.target} to a bigger plan, then restore again",
        )


def _start(kube: Kube, settings: OperatorSettings, restore: MailRestore, now: dt.datetime) -> Step:
    meta, spec = restore.metadata, restore.spec
    namespace, name = meta.namespace, meta.name
    bstatus = _backup(kube, namespace, spec.backup)
    repository, snapshot = _source(spec, bstatus)
    s3 = store.connect(kube, settings)
    target = kube.read(PersonalMailServer, namespace, spec.target)
    if target is None:
        reach = access.grant(kube, settings, s3, repository, now, create=False)
        _new_server(kube, settings, namespace, spec.target, name, repository, snapshot, reach)
        return _created(spec.target, snapshot)
    _check_fits(kube, spec, target, bstatus.total_bytes or 0)
    _hold(kube, target, name)
    if not _stopped(kube, namespace, spec.target):
        return Step(
            status=MailRestoreStatus(
                phase=RestorePhase.PENDING,
                message=f"waiting for {spec.target} to stop",
                snapshot_id=snapshot,
            ),
            retry_in=3,
        )
    pvc = kube.read(PersistentVolumeClaim, namespace, naming.volume_claim(spec.target))
    if pvc is None:
        return Step(
            status=MailRestoreStatus(message=f"waiting for the volume of {spec.target}"),
            retry_in=3,
        )
    job_spec = JobSpec(
        request=Request(API_VERSION, KIND, name, namespace, meta.uid),
        server=spec.target,
        repository=repository,
        action=repo.COMPONENT_RESTORE,
        snapshot=snapshot,
        overwrite=spec.overwrite,
    )
    return _run_job(kube, settings, job_spec, s3, now)


def _created(target: str, snapshot: str) -> Step:
    """The target did not exist and was created from the snapshot: wait for its volume."""
    created = f"created {target} from"
    return Step(
        status=MailRestoreStatus(
            phase=RestorePhase.PENDING,
            message=f"{created} the backup; waiting for its volume",
            snapshot_id=snapshot,
        ),
        events=[Event("Normal", Reason.SERVER_CREATED, f"{created} snapshot {snapshot}")],
        retry_in=3,
    )


def _run_job(
    kube: Kube, settings: OperatorSettings, job_spec: JobSpec, s3: store.S3Store, now: dt.datetime
) -> Step:
    """Start the restore Job once no other Job works on the server or the repository."""
    namespace, repository = job_spec.request.namespace, job_spec.repository
    other = runner.busy(kube, namespace, job_spec.server, job_spec.job_name, repository)
    if other:
        return Step(
            status=MailRestoreStatus(
                phase=RestorePhase.PENDING, message=f"waiting for {other} to end"
            ),
            retry_in=10,
        )
    reach = access.grant(kube, settings, s3, repository, now, create=False)
    runner.start(kube, settings, job_spec, reach)
    return Step(
        status=MailRestoreStatus(
            phase=RestorePhase.RUNNING,
            message=f"Job {job_spec.job_name} is restoring snapshot {job_spec.snapshot}",
            job=job_spec.job_name,
            snapshot_id=job_spec.snapshot,
        ),
        events=[Event("Normal", Reason.STARTED, f"Job {job_spec.job_name} started")],
        retry_in=5,
    )


def _end(
    kube: Kube, restore: MailRestore, now: dt.datetime, ok: bool, reason: str, message: str
) -> Step:
    meta, status = restore.metadata, restore.status
    release(kube, meta.namespace, restore.spec.target, meta.name)
    conditions = set_condition(
        status.conditions,
        Cond(ConditionType.COMPLETED if ok else ConditionType.FAILED, True, reason, message),
        generation=None,
        now=now,
    )
    return Step(
        status=MailRestoreStatus(
            phase=RestorePhase.COMPLETED if ok else RestorePhase.FAILED,
            message=message if ok else f"{reason}: {message}",
            completed_at=at_second(now),
            conditions=conditions,
        ),
        events=[Event("Normal" if ok else "Warning", reason, message)],
    )


def _finish(kube: Kube, restore: MailRestore, now: dt.datetime, job_name: str) -> Step:
    """The restore Job's outcome, once it ended (else: look again soon)."""
    result = runner.outcome(kube, restore.metadata.namespace, job_name)
    if result is None:
        return Step(retry_in=5)
    if not result.ok:
        step = _end(kube, restore, now, False, result.reason, result.message)
    else:
        step = _end(
            kube,
            restore,
            now,
            True,
            Reason.RESTORED,
            f"restored snapshot {result.snapshot}: {result.files} files, "
            f"{result.total_bytes} bytes",
        )
        step.status = _with(step.status, files=result.files, restored_bytes=result.total_bytes)
    step.finished_job = job_name
    return step


def advance(kube: Kube, settings: OperatorSettings, restore: MailRestore, now: dt.datetime) -> Step:
    """The next step of the restore, from what is observed (none once it ended)."""
    status = restore.status
    if status.phase in TERMINAL:
        return Step()
    try:
        if status.phase == RestorePhase.RUNNING:
            return _finish(kube, restore, now, str(status.job))
        step = _start(kube, settings, restore, now)
        step.status = _with(step.status, started_at=status.started_at or at_second(now))
        return step
    except WaitingError as e:
        return Step(
            status=MailRestoreStatus(
                phase=status.phase or RestorePhase.PENDING, message=f"{e.reason}: {e}"
            ),
            retry_in=e.delay,
        )
    except ReconcileError as e:
        return _end(kube, restore, now, False, e.reason, e.message)


def _with(status: RequestStatus | None, **update: object) -> RequestStatus:
    """A step's status with more fields set."""
    return (status or MailRestoreStatus()).model_copy(update=update)


def write(kube: Kube, restore: MailRestore, step: Step) -> None:
    write_status(kube, TERMINAL, restore, step)
