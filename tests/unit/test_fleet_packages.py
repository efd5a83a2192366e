"""What changed between two images' Debian packages (fleet/packages.py), the package
lines of the usage report, and reading both lists from servers (fleet/report.py)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from vpes_operator import naming, storage
from vpes_operator.clients.kube import Kube
from vpes_operator.fleet import packages, report
from vpes_operator.fleet.packages import Packages
from vpes_operator.fleet.planner import Server
from vpes_operator.models.fleet import PackageChange, PackageVersion, WaveMember
from vpes_operator.models.kube import Pod

pytestmark = pytest.mark.unit

OLD, NEW = "registry.test/t:1", "registry.test/t:2"


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        ("1.0", "1.0", 0),
        ("1.0", "1.1", -1),
        ("1.10", "1.9", 1),  # numbers, not text
        ("1.0~rc1", "1.0", -1),  # ~ sorts before the end
        ("1.0", "1.0+deb12u1", -1),
        ("1.0a", "1.0+", -1),  # letters before other characters
        ("1:1.0", "2.0", 1),  # the epoch first
        ("0:2.0", "2.0", 0),
        ("3.7.10-0+deb12u1", "3.7.11-0+deb12u1", -1),
        ("1:2.3.19.1+dfsg1-2.1+deb12u1", "1:2.3.19.1+dfsg1-2.1+deb12u7", -1),
        ("2.36-9+deb12u9", "2.36-9+deb12u10", -1),
        ("1.2-3-4", "1.2-3-5", -1),  # the revision is after the last hyphen
        ("7.88.1-10+deb12u14", "7.88.1-10", 1),
    ],
)
def test_versions_sort_as_dpkg_sorts_them(a: str, b: str, order: int) -> None:
    assert packages.compare(a, b) == order
    assert packages.compare(b, a) == -order


def test_the_difference_by_package() -> None:
    old = {"postfix": "3.7.10-0+deb12u1", "libfoo1": "1.0-1", "bash": "5.2.15-2+b2", "zlib": "1"}
    new = {"postfix": "3.7.11-0+deb12u1", "libfoo2": "2.0-1", "bash": "5.2.15-2+b2", "zlib": "0"}
    got = packages.diff(old, new, from_image=OLD, to_image=NEW)
    assert got.upgraded == [
        PackageChange(name="postfix", from_="3.7.10-0+deb12u1", to="3.7.11-0+deb12u1")
    ]
    assert got.downgraded == [PackageChange(name="zlib", from_="1", to="0")]
    assert got.added == [PackageVersion(name="libfoo2", version="2.0-1")]
    assert got.removed == [PackageVersion(name="libfoo1", version="1.0-1")]
    assert (got.summary, got.omitted, got.message) == (
        "1 upgraded, 1 downgraded, 1 added, 1 removed",
        0,
        None,
    )
    wire = got.wire()
    assert wire["upgraded"] == [
        {"name": "postfix", "from": "3.7.10-0+deb12u1", "to": "3.7.11-0+deb12u1"}
    ]
    assert (wire["fromImage"], wire["toImage"]) == (OLD, NEW)
    same = packages.diff(old, old, from_image=OLD, to_image=NEW)
    assert (same.summary, same.upgraded, same.added) == ("no package changed", [], [])


def test_the_lists_are_capped_and_say_how_many_more() -> None:
    old = {f"lib{i:03d}": "1.0" for i in range(100)}
    new = {f"lib{i:03d}": "1.1" for i in range(100)} | {f"new{i}": "1" for i in range(5)}
    got = packages.diff(old, new, from_image=OLD, to_image=NEW, limit=60)
    assert len(got.upgraded) == 60 and got.added == []
    assert got.omitted == 45
    assert got.summary == "100 upgraded, 5 added"  # the counts are whole
    small = packages.diff(old, new, from_image=OLD, to_image=NEW, limit=102)
    assert (len(small.upgraded), len(small.added), small.omitted) == (100, 2, 3)


REPORT = """vpes-usage 1
volume 4096 262144 131072 120000 65536 60000
mailbox alice@example.org 2048000 12
package dovecot-core 1:2.3.19.1+dfsg1-2.1+deb12u7
package libc6 2.36-9+deb12u14
package libgcc-s1:amd64 12.2.0-14+deb12u1
end
"""


def test_the_report_carries_the_image_s_packages() -> None:
    got = storage.parse_report(REPORT)
    assert got.packages == {
        "dovecot-core": "1:2.3.19.1+dfsg1-2.1+deb12u7",
        "libc6": "2.36-9+deb12u14",
        "libgcc-s1:amd64": "12.2.0-14+deb12u1",
    }
    assert got.mailboxes == {"alice@example.org": (2048000, 12)}  # the storage is unchanged
    before = "".join(line for line in REPORT.splitlines(True) if not line.startswith("package"))
    assert storage.parse_report(before).packages == {}  # an image built before the lists


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("package postfix", "not a package name and version"),
        ("package postfix 3.7 extra", "not a package name and version"),
        ("package Postfix 3.7", "not a package name and version"),
        ("package ../etc 3.7", "not a package name and version"),
        ("package postfix $(id)", "not a Debian version"),
        ("package postfix ~1", "not a Debian version"),
    ],
)
def test_a_bad_package_line_is_refused(line: str, why: str) -> None:
    text = f"vpes-usage 1\nvolume 4096 1 1 1 1 1\n{line}\nend\n"
    with pytest.raises(storage.ReportError, match=why):
        storage.parse_report(text)


class Reports:
    """Servers' lists by (server, image); the others cannot be read."""

    def __init__(self, lists: dict[tuple[str, str], Packages]) -> None:
        self.lists = lists
        self.asked: list[str] = []

    def read(self, namespace: str, server: str, image: str) -> Packages:
        self.asked.append(server)
        if (server, image) not in self.lists:
            raise report.PackageListError(f"{namespace}/{server}: no pod runs {image}")
        return self.lists[(server, image)]


A = {"postfix": "3.7.10-0+deb12u1"}
B = {"postfix": "3.7.11-0+deb12u1"}
CANARY = [WaveMember(namespace="ns", name="c", previous_image=None)]


def _servers(*names: str, image: str | None = None) -> list[Server]:
    return [Server("ns", "c", NEW)] + [Server("ns", n, image) for n in names]


def test_the_previous_list_comes_from_a_server_still_on_the_image() -> None:
    reports = Reports({("c", NEW): B, ("s2", OLD): A})
    got = report.changes(reports, CANARY, _servers("s1", "s2"), to_image=NEW, default_image=OLD)
    assert got.summary == "1 upgraded" and got.from_image == OLD
    assert reports.asked == ["c", "s1", "s2"]  # s1 gave none: the next one did


def test_else_from_the_canary_before_it_moved() -> None:
    reports = Reports({("c", NEW): B})
    remembered = report.Remembered(OLD, A)
    got = report.changes(
        reports, CANARY, _servers(), to_image=NEW, default_image=OLD, remembered=remembered
    )
    assert got.summary == "1 upgraded"
    other = report.Remembered("registry.test/t:0", A)  # another image's list: not used
    got = report.changes(
        reports, CANARY, _servers(), to_image=NEW, default_image=OLD, remembered=other
    )
    assert got.message == (
        f"the package list of {OLD} could not be read: no selected server runs {OLD}"
    )


def test_an_unreadable_target_list_says_why() -> None:
    got = report.changes(Reports({}), CANARY, _servers("s1"), to_image=NEW, default_image=OLD)
    assert got.message == f"the package list of {NEW} could not be read: ns/c: no pod runs {NEW}"
    assert got.upgraded == [] and got.summary == ""


class PodsOf:
    """The API's pods of one server (what LiveReader lists)."""

    def __init__(self, *pods: dict[str, Any]) -> None:
        self.pods = [Pod.model_validate(p) for p in pods]
        self.selectors: list[str] = []

    def read_list(self, _model: type[Pod], _namespace: str, *, labels: str) -> list[Pod]:
        self.selectors.append(labels)
        return self.pods


def _pod(image: str, ip: str | None = "10.0.0.7", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "c-0", **meta},
        "spec": {"containers": [{"name": "mail", "image": image}]},
        "status": {"podIP": ip} if ip else {},
    }


def _report(packages: Packages) -> storage.Report:
    return storage.Report(storage.Volume(1, 1, 1, 1, 1), {}, packages)


@pytest.mark.parametrize(
    ("pods", "given", "why"),
    [
        ([_pod(NEW)], B, None),
        ([_pod(NEW, deletionTimestamp="2026-12-07T03:00:00Z"), _pod(NEW)], B, None),
        ([_pod(OLD)], B, f"ns/c: no pod runs {NEW}"),
        ([], B, f"ns/c: no pod runs {NEW}"),
        ([_pod(NEW, ip=None)], B, "ns/c: its pod c-0 has no address yet"),
        ([_pod(NEW)], {}, f"ns/c: {NEW} records no package list (built before images did)"),
        ([_pod(NEW)], OSError("connection refused"), "ns/c: no usage report: connection refused"),
    ],
)
def test_the_live_reader_asks_the_pod_running_the_image(
    pods: list[dict[str, Any]], given: Packages | OSError, why: str | None
) -> None:
    asked: list[str] = []

    def read(address: str) -> storage.Report:
        asked.append(address)
        if isinstance(given, OSError):
            raise given
        return _report(given)

    kube = PodsOf(*pods)
    reader = report.LiveReader(cast(Kube, kube), report=read)
    if why is None:
        assert reader.read("ns", "c", NEW) == B
        assert asked == ["10.0.0.7"]
    else:
        with pytest.raises(report.PackageListError) as failed:
            reader.read("ns", "c", NEW)
        assert str(failed.value) == why
    assert kube.selectors == [naming.pod_selector("c")]
