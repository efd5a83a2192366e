"""MailBackup: one backup of one PersonalMailServer (an immutable request)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from .. import API_VERSION
from .common import NAME_PATTERN, Model, Object, x_validation
from .conditions import Condition, conditions_field


class BackupMethod(StrEnum):
    RESTIC = "Restic"


class BackupTrigger(StrEnum):
    MANUAL = "Manual"
    SCHEDULE = "Schedule"
    FINAL = "Final"


# Where a MailBackup or MailRestore request is: it ends Completed or Failed.
class RequestPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


BackupPhase = RequestPhase


class MailBackupSpec(Model):
    """Which server to back up. A backup request never changes once made."""

    server: str = Field(
        max_length=63,
        pattern=NAME_PATTERN,
        description="Name of the PersonalMailServer, in this namespace, to back up.",
    )
    method: BackupMethod = Field(
        default=BackupMethod.RESTIC, description="How the backup is taken: Restic."
    )
    trigger: BackupTrigger = Field(
        default=BackupTrigger.MANUAL,
        description="Why the backup exists: Manual, Schedule (the plan's) or Final (before "
        "a server is removed).",
    )


IMMUTABLE_SPEC = [
    x_validation(
        "self == oldSelf", "a backup or restore request cannot be changed; create a new one"
    )
]


class MailBackupStatus(Model):
    """What happened to the backup: phase, snapshot, sizes, times."""

    phase: BackupPhase | None = Field(
        default=None, description="Pending, Running, Completed or Failed."
    )
    message: str | None = Field(default=None, description="What happened, for a person.")
    snapshot_id: str | None = Field(default=None, description="The restic snapshot id.")
    repository: str | None = Field(
        default=None,
        description="The server's restic repository, relative to the provider's bucket prefix "
        "(<namespace>/<server>-<uid>); its key is kept by the operator, not in this namespace.",
    )
    job: str | None = Field(default=None, description="The Job that takes the backup.")
    size_bytes: int | None = Field(default=None, description="Bytes added to the repository.")
    total_bytes: int | None = Field(default=None, description="Bytes of data backed up.")
    files: int | None = Field(default=None, description="Files in the snapshot.")
    started_at: datetime | None = Field(default=None, description="When the backup started.")
    completed_at: datetime | None = Field(default=None, description="When it ended.")
    conditions: list[Condition] = conditions_field("Completed and Failed, with reasons.")


class MailBackup(Object):
    """A MailBackup as read (its spec is immutable and checked by the API server)."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "MailBackup"

    spec: MailBackupSpec
    status: MailBackupStatus = Field(default_factory=MailBackupStatus)
