"""What the node leaves on the host when it stops, and its removal: iptables chains
(``KUBE-*``: kubelet, kube-proxy, kube-router), kube-router's ipsets, mounts under the
state directory, and containers whose shim outlived a killed containerd.

kube-router v2.1.0's own ``--cleanup-config`` panics (a nil pointer in its service
proxy's hairpin cleanup) before it removes its firewall's chains and sets, so the
chains are removed here, by name, with one ``iptables-restore --noflush`` per table.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

CHAIN_PREFIX = "KUBE-"
IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "kube-router-", "inet6:kube-router-")
TABLES = ("filter", "nat", "mangle")


def _run(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    return proc.stdout


def removal_script(saved: str, table: str) -> str:
    """``iptables-restore --noflush`` input that removes every ``KUBE-*`` chain of
    ``table`` (as ``iptables-save -t table`` printed it) and the rules that jump to
    them from the built-in chains; empty when there is none."""
    chains = [
        line[1:].split()[0] for line in saved.splitlines() if line.startswith(":" + CHAIN_PREFIX)
    ]
    if not chains:
        return ""
    owned = set(chains)
    jumps = [
        "-D" + line[2:]
        for line in saved.splitlines()
        if line.startswith("-A ") and line.split()[1] not in owned and _target(line) in owned
    ]
    lines = [f"*{table}", *jumps]
    lines += [f"-F {c}" for c in chains]
    lines += [f"-X {c}" for c in chains]
    return "\n".join([*lines, "COMMIT", ""])


def _target(rule: str) -> str | None:
    parts = rule.split()
    return parts[parts.index("-j") + 1] if "-j" in parts[:-1] else None


def remove_chains() -> None:
    for save, restore in (
        ("iptables-save", "iptables-restore"),
        ("ip6tables-save", "ip6tables-restore"),
    ):
        for table in TABLES:
            script = removal_script(_run(save, "-t", table), table)
            if script:
                _run(restore, "--noflush", stdin=script)


def remove_ipsets() -> None:
    for name in _run("ipset", "list", "-n").split():
        if name.startswith(IPSET_PREFIXES):
            _run("ipset", "destroy", name)


def unmount_under(root: Path) -> None:
    """Unmount every mount point at or below ``root``, deepest first."""
    prefix = str(root.resolve())
    points: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    for point in sorted(set(points), key=len, reverse=True):
        _run("umount", "-l", point)


def kill_leftovers(socket_path: str) -> None:
    """containerd's shims outlive it by design; kill ours (found by the containerd
    address on their command line) and the containers under them."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"containerd-shim" in argv[0] and socket_path.encode() in argv:
            pid = int(proc.name)
            for child in [*_descendants(pid), pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        kids = [int(c) for c in children]
        found.extend(kids)
        todo.extend(kids)
    return found
