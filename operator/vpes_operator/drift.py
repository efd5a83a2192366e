"""Drift: a server's children deleted, or edited by someone other than the operator.

Handlers run on a server's create, update and resume only, so a child deleted
or edited by hand would stay gone or wrong until the spec changed. A sweep
lists the children's metadata (a few list calls for the whole fleet, with a
label selector: the cost does not grow with kopf's memory) and names the
servers to reconcile again; the reconcile's server-side apply puts back what
is missing and takes back the fields someone else changed.

These functions are pure: what is found → which servers, and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from . import naming
from .dns import ownership
from .models.common import ObjectMeta

PMS = "PersonalMailServer"


@dataclass(frozen=True)
class ChildKind:
    api_version: str
    kind: str
    plural: str
    name: Callable[[str], str]  # server name → the child's name

    @property
    def list_path(self) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{base}/{self.plural}"


# Every server has these (Secrets are left out: the operator does not list them,
# and a lost credentials Secret is not recreated with new passwords behind a
# customer's back; the PVC is protected while the pod uses it).
CHILDREN = (
    ChildKind("apps/v1", "StatefulSet", "statefulsets", naming.statefulset),
    ChildKind("v1", "Service", "services", naming.service),
    ChildKind("v1", "ConfigMap", "configmaps", naming.config_map),
    ChildKind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", naming.network_policy),
)
# Field managers whose writes are not drift: status reporting by controllers.
IGNORED_SUBRESOURCES = frozenset({"status"})


@dataclass(frozen=True)
class Server:
    namespace: str
    name: str
    uid: str
    settled: bool  # reconciled at least once, not being deleted


@dataclass(frozen=True)
class Drift:
    namespace: str
    name: str
    reason: str  # for a person: what was found


def server_of(meta: ObjectMeta) -> Server:
    """A PersonalMailServer's metadata (from a metadata-only list) → what the sweep needs."""
    return Server(
        namespace=meta.namespace,
        name=meta.name,
        uid=meta.uid,
        settled=not meta.deletion_timestamp and naming.FINALIZER in meta.finalizers,
    )


def foreign_writer(meta: ObjectMeta, field_manager: str) -> str | None:
    """The manager (other than ours) that last wrote a child's spec or data, if any."""
    entries = [
        e
        for e in meta.managed_fields
        if e.manager != field_manager and e.subresource not in IGNORED_SUBRESOURCES
    ]
    if not entries:
        return None
    latest = max(entries, key=lambda e: e.time)
    return latest.manager or "unknown"


def find(
    servers: Iterable[Server],
    children: Mapping[str, list[ObjectMeta]],
    field_manager: str,
    already: Mapping[tuple[str, str], str] | None = None,
) -> list[Drift]:
    """Servers whose children are missing or were written by another manager.

    `children` maps each ChildKind.kind to the metadata of every child of that
    kind that the operator manages. `already` maps a child (uid,
    resourceVersion) to a reason reported before: an edit that a reconcile
    cannot take back (a field the operator does not own) is reported once, not
    every sweep.
    """
    seen = already or {}
    by_owner: dict[tuple[str, str], dict[str, ObjectMeta]] = {}
    for kind, metas in children.items():
        for meta in metas:
            uid = meta.owner_uid(PMS)
            if uid:
                by_owner.setdefault((uid, kind), {})[meta.name] = meta
    found: list[Drift] = []
    for server in servers:
        if not server.settled:
            continue
        reasons = []
        for child in CHILDREN:
            found_meta = by_owner.get((server.uid, child.kind), {}).get(child.name(server.name))
            if found_meta is None:
                reasons.append(f"{child.kind} {child.name(server.name)} is missing")
                continue
            meta = found_meta
            writer = foreign_writer(meta, field_manager)
            key = (meta.uid, meta.resource_version)
            if writer and key not in seen:
                reasons.append(f"{child.kind} {child.name(server.name)} was changed by {writer}")
        if reasons:
            found.append(Drift(server.namespace, server.name, "; ".join(reasons)))
    return found


def edited_children(
    children: Mapping[str, list[ObjectMeta]], field_manager: str
) -> dict[tuple[str, str], str]:
    """(uid, resourceVersion) → writer of every child another manager wrote."""
    out = {}
    for metas in children.values():
        for meta in metas:
            writer = foreign_writer(meta, field_manager)
            if writer:
                out[(meta.uid, meta.resource_version)] = writer
    return out


def orphaned_dns(config_maps: Iterable[ObjectMeta], server_uids: Iterable[str]) -> list[ObjectMeta]:
    """`<server>-dns` ConfigMaps being deleted whose server is gone, still held by
    their finalizer: the server went without its DNS cleanup (its own finalizer
    removed by hand, say), and nothing else would ever release them."""
    alive = set(server_uids)
    return [
        meta
        for meta in config_maps
        if meta.deletion_timestamp
        and ownership.CM_FINALIZER in meta.finalizers
        and meta.labels.get(naming.LABEL_COMPONENT) == "dns"
        and meta.owner_uid(PMS) not in alive
    ]
