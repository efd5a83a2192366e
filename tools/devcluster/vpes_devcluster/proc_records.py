"""A detached process recorded in a file: its pid, a marker its command line carries
(checked against /proc/<pid>/cmdline, so a recycled pid is never taken for it) and
what a later run needs to reuse it (a port, keys).

`make demo` records every process it starts this way (the operator, S3, stripe-mock,
billing): a second `up` reuses what still runs and replaces what does not, and
`down` stops everything recorded, then removes the records.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpes_devcluster.errors import ClusterError

MARKER_OPTION = "vpes-record"


@dataclass(frozen=True)
class Record:
    pid: int
    marker: str  # one whole argument of the process's command line
    data: dict[str, Any] = field(default_factory=dict)


def python_marker(record: Path) -> str:
    """The marker of a Python process recorded in `record`: `vpes-record=<its path>`."""
    return f"{MARKER_OPTION}={record.absolute()}"


def python_argv(record: Path, *args: str) -> list[str]:
    """`python -X vpes-record=<record> args...`: the interpreter keeps the option in
    sys._xoptions and otherwise ignores it; the command line names its record (and
    so the state directory it belongs to)."""
    return [sys.executable, "-X", python_marker(record), *args]


def write(path: Path, pid: int, marker: str, **data: Any) -> Record:
    """Record `pid` (readable by the owner only: S3 keys go in `data`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": pid, "marker": marker, "data": data}, f)
    tmp.replace(path)
    return Record(pid, marker, data)


def read(path: Path) -> Record | None:
    """The record in `path`; None if there is none (or it is not a record)."""
    try:
        raw = json.loads(path.read_text())
        return Record(int(raw["pid"]), str(raw["marker"]), dict(raw.get("data") or {}))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def matches(pid: int, marker: str) -> bool:
    """True while `pid` runs a command line with `marker` as one of its arguments
    (False once it has exited, also while a zombie: its cmdline is empty then)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in raw.split(b"\0")


def running(path: Path) -> Record | None:
    """The record in `path` if its process still runs, else None."""
    record = read(path)
    return record if record is not None and matches(record.pid, record.marker) else None


def _wait_gone(record: Record, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while matches(record.pid, record.marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(path: Path, grace: float = 10.0) -> None:
    """Stop the process recorded in `path` if it still runs (SIGTERM, SIGKILL after
    `grace` seconds), then remove the record. A pid whose command line no longer
    carries the marker is left alone."""
    record = read(path)
    if record is not None and matches(record.pid, record.marker):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, sig)
            if _wait_gone(record, grace):
                break
        else:
            raise ClusterError(f"pid {record.pid} ({path}) survived SIGKILL")
    path.unlink(missing_ok=True)
