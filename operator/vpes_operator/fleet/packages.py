"""What changed between two tenant images' Debian packages: pure.

Each tenant image records its packages when it is built (`/usr/share/vpes/packages`,
images/tenant/Containerfile) and its usage report lists them (`package <name>
<version>` lines, `storage.parse_report`). A fleet upgrade compares the list of the
image its servers left with the list of the image they now run, and keeps the
difference in its status, bounded: at most `LIMIT` packages are named, `omitted` says
how many more changed.

Versions are ordered as dpkg orders them (Debian Policy 5.6.12): epoch, then the
upstream version and the Debian revision, each compared as alternating runs of
non-digits (letters before other characters, `~` before everything, even the end)
and numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..models.fleet import PackageChange, PackageChanges, PackageVersion

Packages = Mapping[str, str]  # package name → version
# The most packages a status names; the rest are counted in `omitted`.
LIMIT = 60
# A Debian package name (with an architecture for a Multi-Arch: same package) and version.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9+.-]{0,127}(:[a-z0-9-]{1,32})?")
VERSION_RE = re.compile(r"([0-9]{1,9}:)?[A-Za-z0-9.+~-]{1,190}")


class PackageError(ValueError):
    """A package line that is not `<name> <version>`."""


def parse_package(fields: list[str]) -> tuple[str, str]:
    """One `package` line's fields, checked: (name, version)."""
    if len(fields) != 2 or not NAME_RE.fullmatch(fields[0]):
        raise PackageError(f"not a package name and version: {' '.join(fields)[:80]!r}")
    if not VERSION_RE.fullmatch(fields[1]) or not fields[1][0].isalnum():
        raise PackageError(f"{fields[1][:80]!r} is not a Debian version ({fields[0]})")
    return fields[0], fields[1]


def _order(char: str) -> int:
    """dpkg's weight of one non-digit character: ~ first, then the end, letters, others."""
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    """dpkg's comparison of two upstream versions or two revisions."""
    while a or b:
        text_a = re.match(r"[^0-9]*", a).group()  # type: ignore[union-attr]
        text_b = re.match(r"[^0-9]*", b).group()  # type: ignore[union-attr]
        for i in range(max(len(text_a), len(text_b))):
            wa = _order(text_a[i]) if i < len(text_a) else 0
            wb = _order(text_b[i]) if i < len(text_b) else 0
            if wa != wb:
                return -1 if wa < wb else 1
        a, b = a[len(text_a) :], b[len(text_b) :]
        num_a = re.match(r"[0-9]*", a).group()  # type: ignore[union-attr]
        num_b = re.match(r"[0-9]*", b).group()  # type: ignore[union-attr]
        if int(num_a or 0) != int(num_b or 0):
            return -1 if int(num_a or 0) < int(num_b or 0) else 1
        a, b = a[len(num_a) :], b[len(num_b) :]
    return 0


def _split(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.partition(":") if ":" in version else ("0", "", version)
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    return int(epoch or 0), upstream, revision


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian version `a` sorts before, with or after `b`."""
    epoch_a, upstream_a, revision_a = _split(a)
    epoch_b, upstream_b, revision_b = _split(b)
    if epoch_a != epoch_b:
        return -1 if epoch_a < epoch_b else 1
    return _compare_part(upstream_a, upstream_b) or _compare_part(revision_a, revision_b)


def summary(upgraded: int, downgraded: int, added: int, removed: int) -> str:
    """`3 upgraded, 1 added`: how many of each, said for a person."""
    counts = [
        (upgraded, "upgraded"),
        (downgraded, "downgraded"),
        (added, "added"),
        (removed, "removed"),
    ]
    said = [f"{n} {what}" for n, what in counts if n]
    return ", ".join(said) if said else "no package changed"


def _caps(sizes: list[int], limit: int) -> list[int]:
    """How many of each group fit in `limit`, the groups taken in order."""
    caps = []
    for size in sizes:
        caps.append(min(size, limit))
        limit -= caps[-1]
    return caps


def diff(
    old: Packages, new: Packages, *, from_image: str, to_image: str, limit: int = LIMIT
) -> PackageChanges:
    """The packages upgraded, downgraded, added and removed from `old` to `new`, by name;
    at most `limit` of them named (upgrades first, then downgrades, additions, removals)."""
    upgraded, downgraded = [], []
    for name in sorted(old.keys() & new.keys()):
        order = compare(old[name], new[name])
        change = PackageChange(name=name, from_=old[name], to=new[name])
        if order < 0:
            upgraded.append(change)
        elif order > 0:
            downgraded.append(change)
    added = [PackageVersion(name=n, version=new[n]) for n in sorted(new.keys() - old.keys())]
    removed = [PackageVersion(name=n, version=old[n]) for n in sorted(old.keys() - new.keys())]
    sizes = [len(upgraded), len(downgraded), len(added), len(removed)]
    caps = _caps(sizes, limit)
    return PackageChanges(
        from_image=from_image,
        to_image=to_image,
        summary=summary(*sizes),
        upgraded=upgraded[: caps[0]],
        downgraded=downgraded[: caps[1]],
        added=added[: caps[2]],
        removed=removed[: caps[3]],
        omitted=sum(sizes) - sum(caps),
    )
