"""Child processes that outlive their starter: each in its own session and process
group, logged to a file, recorded with its command line so that a later, separate
invocation stops exactly those processes and nothing else."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from vpes_devcluster.errors import ClusterError


@dataclass(frozen=True)
class Proc:
    """One started process: its name, pid (also its process group id), argv and log."""

    name: str
    pid: int
    cmdline: list[str]
    log: str


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def terminate(popen: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """End a child started with ``subprocess.Popen``: SIGTERM, then SIGKILL after
    ``timeout`` seconds; reaped either way. Nothing if it already exited."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def spawn(
    name: str, argv: list[str], log_dir: Path, env: Mapping[str, str] | None = None
) -> tuple[Proc, subprocess.Popen[bytes]]:
    """Start ``argv`` detached (new session), stdout and stderr to ``log_dir/name.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=dict(env) if env is not None else None,
        )
    return Proc(name, popen.pid, list(argv), str(log)), popen


def cmdline_of(pid: int) -> list[str] | None:
    """The live argv of ``pid``, or None if it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode("utf-8", "surrogateescape").split("\0")


def is_ours(proc: Proc) -> bool:
    """True while ``proc.pid`` still runs the very command line we started."""
    return cmdline_of(proc.pid) == proc.cmdline


def log_tail(proc: Proc, lines: int = 30) -> str:
    try:
        text = Path(proc.log).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _signal_group(proc: Proc, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _wait_gone(proc: Proc, timeout: float, popen: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None:
            popen.poll()
        if not is_ours(proc):
            return True
        time.sleep(0.05)
    return False


def stop(
    procs: Iterable[Proc],
    grace: float = 5.0,
    popens: Mapping[int, subprocess.Popen[bytes]] | None = None,
) -> None:
    """Stop ``procs`` in the given order: SIGTERM to the process group, SIGKILL after
    ``grace`` seconds. A pid whose command line no longer matches is left alone."""
    for proc in procs:
        popen = (popens or {}).get(proc.pid)
        if not is_ours(proc):
            continue
        _signal_group(proc, signal.SIGTERM)
        if not _wait_gone(proc, grace, popen):
            _signal_group(proc, signal.SIGKILL)
            if not _wait_gone(proc, grace, popen):
                raise ClusterError(f"{proc.name} (pid {proc.pid}) survived SIGKILL")
        # Anything the leader left behind in its group goes too.
        _signal_group(proc, signal.SIGKILL)
        if popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=1)


def save(path: Path, procs: Iterable[Proc]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(p) for p in procs], indent=2) + "\n")
    tmp.replace(path)


def load(path: Path) -> list[Proc]:
    if not path.exists():
        return []
    try:
        raw = json.loads(path.read_text())
        return [Proc(str(p["name"]), int(p["pid"]), list(p["cmdline"]), str(p["log"])) for p in raw]
    except (ValueError, KeyError, TypeError) as exc:
        raise ClusterError(f"{path} is not a process record: {exc}") from exc
