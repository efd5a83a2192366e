"""What a fleet upgrade's status says changed in the packages: read the two images'
lists from running servers (their usage reports) and compare them.

The target image's list comes from a server of the wave that just passed the gate;
the previous image's from a selected server still on it, or else from the list read
from the canary just before it moved (kept in memory by the controller). Behind a
small interface (`PackageReader`) so a test without a kubelet can stand in for the pods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from .. import naming
from ..builders.workload import MAIL_CONTAINER
from ..clients.kube import Kube
from ..clients.usage import read_report
from ..models.fleet import PackageChanges, WaveMember
from ..models.kube import Pod
from ..storage import Report, ReportError
from .packages import Packages, diff
from .planner import Key, Server

# The most servers asked for one image's list before saying it is unknown.
ATTEMPTS = 3


class PackageListError(Exception):
    """A server's package list could not be read; the message says why."""


class PackageReader(Protocol):
    def read(self, namespace: str, server: str, image: str) -> Packages:
        """The package list of the server's pod running `image` (PackageListError: none)."""


@dataclass(frozen=True)
class LiveReader:
    """The real reader: the pod's address from the API, its usage report over TCP."""

    kube: Kube
    report: Callable[[str], Report] = read_report

    def read(self, namespace: str, server: str, image: str) -> Packages:
        where = f"{namespace}/{server}"
        for pod in self.kube.read_list(Pod, namespace, labels=naming.pod_selector(server)):
            mail = next((c for c in pod.spec.containers if c.name == MAIL_CONTAINER), None)
            if pod.metadata.deletion_timestamp or mail is None or mail.image != image:
                continue
            if not pod.status.pod_ip:
                raise PackageListError(f"{where}: its pod {pod.metadata.name} has no address yet")
            try:
                packages = self.report(pod.status.pod_ip).packages
            except (OSError, ReportError) as e:
                raise PackageListError(f"{where}: no usage report: {e}") from e
            if not packages:
                raise PackageListError(
                    f"{where}: {image} records no package list (built before images did)"
                )
            return packages
        raise PackageListError(f"{where}: no pod runs {image}")


def first_list(reader: PackageReader, keys: Iterable[Key], image: str) -> Packages:
    """The list of `image` from the first of (at most ATTEMPTS) `keys` that gives one."""
    why = f"no selected server runs {image}"
    for attempt, (namespace, name) in enumerate(keys):
        if attempt == ATTEMPTS:
            break
        try:
            return reader.read(namespace, name, image)
        except PackageListError as e:
            why = str(e)
    raise PackageListError(why)


@dataclass(frozen=True)
class Remembered:
    """The package list of an image, read from the canary before it moved."""

    image: str
    packages: Packages


def changes(
    reader: PackageReader,
    passed: list[WaveMember],
    servers: list[Server],
    *,
    to_image: str,
    default_image: str,
    remembered: Remembered | None = None,
) -> PackageChanges:
    """What changed between the image the passed wave's first server left and `to_image`
    (its `message` says why, when a list could not be read)."""
    from_image = passed[0].previous_image or default_image
    unknown = PackageChanges(from_image=from_image, to_image=to_image)
    try:
        new = first_list(reader, [(m.namespace, m.name) for m in passed], to_image)
    except PackageListError as e:
        unknown.message = f"the package list of {to_image} could not be read: {e}"
        return unknown
    moved = {(m.namespace, m.name) for m in passed}
    peers = [s.key for s in servers if (s.image or default_image) == from_image]
    try:
        old = first_list(reader, [k for k in peers if k not in moved], from_image)
    except PackageListError as e:
        if remembered is None or remembered.image != from_image:
            unknown.message = f"the package list of {from_image} could not be read: {e}"
            return unknown
        old = remembered.packages
    return diff(old, new, from_image=from_image, to_image=to_image)
