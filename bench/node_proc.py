"""What ``/proc`` says about the node's processes and memory (``bench/node.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from bench.memory import _rollup

MIB = 1024 * 1024


def read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def memory_cgroup(pid: int) -> str:
    fallback = ""
    for line in read(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
        if controllers == "":
            fallback = path
    return fallback


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def ppid(pid: int) -> int:
    stat = read(f"/proc/{pid}/stat")
    return int(stat.rsplit(")", 1)[1].split()[1]) if stat else 0


def comm(pid: int) -> str:
    return read(f"/proc/{pid}/comm").strip()


def pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]


def pss(pid: int) -> int:
    m = _rollup(pid)
    return m.pss if m is not None else 0


def meminfo(field: str) -> int:
    """A field of /proc/meminfo, in bytes (0 when missing)."""
    for line in read("/proc/meminfo").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def mem_available() -> int:
    return meminfo("MemAvailable")


def mem_total() -> int:
    return meminfo("MemTotal")


def machine_tasks() -> int:
    """Threads on the machine (each takes a PID)."""
    return int(read("/proc/loadavg").split()[3].split("/")[1])


def machine_state() -> dict[str, float]:
    return {"mem_available_mib": mem_available() / MIB, "tasks": machine_tasks()}
