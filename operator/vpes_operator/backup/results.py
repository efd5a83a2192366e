"""What a backup or restore Job ended with: its pod's termination message, parsed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..models.kube import Job, Pod


@dataclass(frozen=True)
class JobResult:
    ok: bool
    reason: str = ""
    message: str = ""
    snapshot: str = ""
    files: int | None = None
    total_bytes: int | None = None
    added_bytes: int | None = None
    snapshots: tuple[str, ...] = ()
    retention: str = ""


def job_state(job: Job | None) -> str:
    """Running, Complete or Failed (from the Job's conditions and counts)."""
    if job is None:
        return "Missing"
    status = job.status
    for c in status.conditions:
        if c.status == "True" and c.type in ("Complete", "SuccessCriteriaMet"):
            return "Complete"
        if c.status == "True" and c.type in ("Failed", "FailureTarget"):
            return "Failed"
    if status.succeeded > 0:
        return "Complete"
    if status.failed > 0:
        return "Failed"
    return "Running"


def job_failure_reason(job: Job) -> str:
    for c in job.status.conditions:
        if c.type in ("Failed", "FailureTarget") and c.status == "True":
            return f"{c.reason}: {c.message}".strip(": ")
    return ""


def termination(pods: list[Pod]) -> tuple[int | None, str]:
    """(exit code, message) of the newest terminated container among a Job's pods."""
    best: tuple[str, int | None, str] | None = None
    for pod in pods:
        for cs in pod.status.container_statuses:
            term = cs.state.terminated
            if term is None:
                continue
            if best is None or term.finished_at >= best[0]:
                best = (term.finished_at, term.exit_code, term.message)
    return (None, "") if best is None else (best[1], best[2])


def parse(exit_code: int | None, message: str, *, fallback: str = "") -> JobResult:
    """The result a pod reported, or a failure that says it reported none."""
    text = message.strip()
    doc: Any = None
    if text:
        try:
            doc = json.loads(text.splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            doc = None
    if not isinstance(doc, dict):
        detail = f" ({fallback})" if fallback else ""
        return JobResult(
            ok=False,
            reason="NoResult",
            message=f"the job's pod ended (exit code {exit_code}) without reporting a result"
            f"{detail}; see its log with kubectl logs",
        )
    ok = bool(doc.get("ok")) and exit_code in (0, None)

    def num(key: str) -> int | None:
        value = doc.get(key)
        return int(value) if isinstance(value, int | float) else None

    return JobResult(
        ok=ok,
        reason=str(doc.get("reason") or ("" if ok else "Failed")),
        message=str(doc.get("message") or ""),
        snapshot=str(doc.get("snapshot") or ""),
        files=num("files"),
        total_bytes=num("totalBytes") if "totalBytes" in doc else num("bytes"),
        added_bytes=num("addedBytes"),
        snapshots=tuple(str(s) for s in doc.get("snapshots") or []),
        retention=str(doc.get("retention") or ""),
    )
