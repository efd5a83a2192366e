"""MailRestore: bring a server's mail back from a MailBackup (an immutable request)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from .. import API_VERSION
from .backup import RequestPhase
from .common import NAME_PATTERN, Model, Object
from .conditions import Condition, conditions_field

RestorePhase = RequestPhase


class MailRestoreSpec(Model):
    """Which backup to restore, into which server. Never changes once made."""

    backup: str = Field(
        max_length=253,
        pattern=NAME_PATTERN,
        description="Name of the MailBackup, in this namespace, to restore from.",
    )
    target: str = Field(
        max_length=63,
        pattern=NAME_PATTERN,
        description="The PersonalMailServer to restore into: the backed-up one or a new one.",
    )
    overwrite: bool = Field(
        default=False,
        description="Allow restoring into a volume that already holds mail. Off by default: "
        "a restore never overwrites mail unless asked to.",
    )


class MailRestoreStatus(Model):
    """What happened to the restore: phase and times."""

    phase: RestorePhase | None = Field(
        default=None, description="Pending, Running, Completed or Failed."
    )
    message: str | None = Field(default=None, description="What happened, for a person.")
    snapshot_id: str | None = Field(default=None, description="The restic snapshot restored.")
    files: int | None = Field(default=None, description="Files restored.")
    restored_bytes: int | None = Field(default=None, description="Bytes of mail restored.")
    job: str | None = Field(default=None, description="The Job that restores the volume.")
    started_at: datetime | None = Field(default=None, description="When the restore started.")
    completed_at: datetime | None = Field(default=None, description="When it ended.")
    conditions: list[Condition] = conditions_field("Completed and Failed, with reasons.")


class MailRestore(Object):
    """A MailRestore as read (its spec is immutable and checked by the API server)."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "MailRestore"

    spec: MailRestoreSpec
    status: MailRestoreStatus = Field(default_factory=MailRestoreStatus)
