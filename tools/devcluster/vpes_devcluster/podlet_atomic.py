"""The kubelet's atomic writer, and its volume ownership for a pod ``fsGroup``.

:func:`write_atomic` writes a configMap, secret, projected or downwardAPI volume: the
files go into a new timestamped directory ``..<date>.<random>``, the link ``..data`` is
pointed at it by one rename, each top-level name is a link to ``..data/<name>``, and
the previous directory is removed. A reader that opens ``name`` always sees one whole
version, and ``readlink ..data`` changes exactly when the content did.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


class PathError(ValueError):
    """A payload path that would leave its volume."""


@dataclass(frozen=True)
class File:
    data: bytes
    mode: int


Payload = dict[str, File]


def _safe(rel: str) -> str:
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or rel.startswith(".."):
        raise PathError(f"invalid path {rel!r} in a projected volume")
    return str(path)


def _final_mode(mode: int, gid: int | None) -> int:
    return mode | 0o440 if gid is not None else mode


def _current(directory: Path) -> dict[str, tuple[bytes, int, int]] | None:
    data = directory / "..data"
    if not data.is_symlink():
        return None
    out: dict[str, tuple[bytes, int, int]] = {}
    root = data.resolve()
    for path in root.rglob("*"):
        if path.is_file():
            info = path.stat()
            out[str(path.relative_to(root))] = (
                path.read_bytes(),
                info.st_mode & 0o7777,
                info.st_gid,
            )
    return out


def _expected(payload: Payload, gid: int | None) -> dict[str, tuple[bytes, int, int]]:
    group = gid if gid is not None else os.getgid()
    return {rel: (f.data, _final_mode(f.mode, gid), group) for rel, f in payload.items()}


def write_atomic(directory: Path, payload: Payload, gid: int | None = None) -> bool:
    """Make ``directory`` hold ``payload`` (relative path → file) as the kubelet's atomic
    writer does; True when something changed (a new ``..data`` was swapped in)."""
    directory.mkdir(parents=True, exist_ok=True)
    payload = {_safe(rel): f for rel, f in payload.items()}
    if _current(directory) == _expected(payload, gid):
        return False
    stamp = dt.datetime.now(dt.UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
    version = Path(tempfile.mkdtemp(prefix=stamp, dir=directory))
    for rel, item in payload.items():
        path = version / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.data)
        if gid is not None:
            os.chown(path, -1, gid)
        path.chmod(_final_mode(item.mode, gid))
    for sub in [version, *(p for p in version.rglob("*") if p.is_dir())]:
        if gid is not None:
            os.chown(sub, -1, gid)
        sub.chmod(0o2755 if gid is not None else 0o755)
    data = directory / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    tmp = directory / "..data_tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(version.name, tmp)
    os.rename(tmp, data)
    tops = {rel.split("/")[0] for rel in payload}
    for top in tops:
        link = directory / top
        if not link.is_symlink():
            os.symlink(f"..data/{top}", link)
    for entry in directory.iterdir():
        if not entry.name.startswith("..") and entry.name not in tops and entry.is_symlink():
            entry.unlink()
    if old and old != version.name:
        shutil.rmtree(directory / old, ignore_errors=True)
    return True


def set_ownership(path: Path, gid: int, policy: str | None) -> None:
    """SetVolumeOwnership for a writable volume: group ``gid``, ``g+rw``, setgid dirs;
    with ``OnRootMismatch`` nothing is done when the root already looks right."""
    info = path.stat()
    if policy == "OnRootMismatch" and info.st_gid == gid and info.st_mode & 0o2070 == 0o2070:
        return
    for entry in [path, *path.rglob("*")]:
        if entry.is_symlink():
            continue
        os.chown(entry, -1, gid)
        mode = entry.stat().st_mode & 0o7777
        entry.chmod(mode | 0o2770 if entry.is_dir() else mode | 0o660)
