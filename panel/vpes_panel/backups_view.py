"""Backups and restores as a person reads them, and the requests the panel makes.

A backup or a restore is a request object (MailBackup, MailRestore) the operator
acts on; the panel only creates them and shows their status. A restore into the
running server brings every mailbox's contents back to the backup, so it is
asked for with `overwrite: true` (the operator refuses to write a volume that
holds mail otherwise) and only after the person typed the server's name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from vpes_operator import API_VERSION
from vpes_operator.models.backup import BackupMethod, BackupTrigger, RequestPhase

from .health import human_bytes

JSON = dict[str, Any]
TRIGGERS = {
    BackupTrigger.MANUAL.value: "Asked for",
    BackupTrigger.SCHEDULE.value: "Scheduled",
    BackupTrigger.FINAL.value: "Final (before removal)",
}


@dataclass(frozen=True)
class Row:
    name: str
    trigger: str
    phase: str
    completed: str
    size: str
    message: str


def _when(value: object) -> str:
    """An API timestamp (2026-12-06T07:20:40Z) as `2026-12-06 07:20 UTC`."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def backup_rows(objects: list[JSON]) -> list[Row]:
    """The MailBackups (newest first, as listed) as table rows."""
    out = []
    for obj in objects:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        size = status.get("totalBytes")
        out.append(
            Row(
                name=str(obj["metadata"]["name"]),
                trigger=TRIGGERS.get(str(spec.get("trigger")), str(spec.get("trigger") or "")),
                phase=str(status.get("phase") or RequestPhase.PENDING.value),
                completed=_when(status.get("completedAt")),
                size=human_bytes(int(size)) if size is not None else "",
                message=str(status.get("message") or ""),
            )
        )
    return out


@dataclass(frozen=True)
class RestoreRow:
    backup: str
    requested: str
    phase: str
    completed: str
    restored: str
    message: str


def restore_rows(objects: list[JSON]) -> list[RestoreRow]:
    """The MailRestores (newest first, as listed) as table rows."""
    out = []
    for obj in objects:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        size = status.get("restoredBytes")
        out.append(
            RestoreRow(
                backup=str(spec.get("backup") or ""),
                requested=_when(obj["metadata"].get("creationTimestamp")),
                phase=str(status.get("phase") or RequestPhase.PENDING.value),
                completed=_when(status.get("completedAt")),
                restored=human_bytes(int(size)) if size is not None else "",
                message=str(status.get("message") or ""),
            )
        )
    return out


def restorable(rows: list[Row]) -> list[Row]:
    """The backups a restore may use: the completed ones."""
    return [r for r in rows if r.phase == RequestPhase.COMPLETED.value]


def busy(restores: list[RestoreRow]) -> bool:
    """A restore is still under way (a second one would wait for it, or fight it)."""
    return any(
        r.phase in (RequestPhase.PENDING.value, RequestPhase.RUNNING.value) for r in restores
    )


def stamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S")


def manual_backup(namespace: str, server: str, now: dt.datetime) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": "MailBackup",
        "metadata": {"name": f"{server}-manual-{stamp(now)}", "namespace": namespace},
        "spec": {
            "server": server,
            "method": BackupMethod.RESTIC.value,
            "trigger": BackupTrigger.MANUAL.value,
        },
    }


def restore_request(namespace: str, server: str, backup: str, now: dt.datetime) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": "MailRestore",
        "metadata": {"name": f"{server}-restore-{stamp(now)}", "namespace": namespace},
        "spec": {"backup": backup, "target": server, "overwrite": True},
    }


def check_restore(values: dict[str, str], server: str, completed: list[str]) -> dict[str, str]:
    """field → what to fix, for the restore form (empty: go ahead)."""
    errors: dict[str, str] = {}
    backup = values.get("backup", "")
    if not backup:
        errors["backup"] = "Choose the backup to go back to."
    elif backup not in completed:
        errors["backup"] = "Choose one of the completed backups listed."
    typed = values.get("confirm", "").strip().lower()
    if typed != server:
        errors["confirm"] = (
            f"Type {server} to confirm that the mail received since this backup will be lost."
            if typed
            else f"Type the server's name, {server}, to confirm."
        )
    return errors
