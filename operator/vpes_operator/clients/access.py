"""Writes the customer panel's access objects and login hashes (builders/access.py).

Every reconcile of a server calls `ensure` and `publish_logins`; both remember
what this process already wrote, so a thousand servers resumed at start cost one
pass each, and an unchanged server no API call at all. `vpes-logins` is shared by
the servers of a namespace: each writes only its own key, by merge patch (a
server-side apply by one field manager would drop the keys of the others).
"""

from __future__ import annotations

import base64
import hashlib
import threading

from ..builders import access
from ..settings import OperatorSettings
from .kube import ApiError, Kube

_lock = threading.Lock()
_namespaces_done: set[str] = set()
_logins_written: dict[tuple[str, str], str] = {}  # (namespace, server) → digest


def forget() -> None:
    """Drop what this process remembers (tests; a new leader starts afresh anyway)."""
    with _lock:
        _namespaces_done.clear()
        _logins_written.clear()


def ensure(kube: Kube, settings: OperatorSettings, namespace: str) -> None:
    """The ServiceAccount, both bindings and the panel's Secret in `namespace`."""
    if not access.enabled(settings):
        return
    with _lock:
        if namespace in _namespaces_done:
            return
    for obj in access.access_objects(settings, namespace):
        kube.apply(obj)
    for name in (access.PANEL_SECRET, access.LOGINS_SECRET):
        _create_once(kube, access.secret(name, namespace))
    with _lock:
        _namespaces_done.add(namespace)


def _create_once(kube: Kube, obj: access.JSON) -> None:
    try:
        kube.create(obj)
    except ApiError as e:
        if e.status != 409:
            raise


def publish_logins(
    kube: Kube, settings: OperatorSettings, namespace: str, server: str, hashes: dict[str, str]
) -> None:
    """The server's mailbox hashes into `vpes-logins` (only when they changed)."""
    if not access.enabled(settings):
        return
    doc = access.logins_document(hashes)
    digest = hashlib.sha256(doc.encode()).hexdigest()
    with _lock:
        if _logins_written.get((namespace, server)) == digest:
            return
    data: dict[str, str | None] = {
        access.logins_key(server): base64.b64encode(doc.encode()).decode()
    }
    try:
        _patch(kube, namespace, data)
    except ApiError as e:
        if e.status != 404:  # deleted by hand: made again
            raise
        _create_once(kube, access.secret(access.LOGINS_SECRET, namespace))
        _patch(kube, namespace, data)
    with _lock:
        _logins_written[(namespace, server)] = digest


def withdraw_logins(kube: Kube, settings: OperatorSettings, namespace: str, server: str) -> None:
    """A deleted server's key out of `vpes-logins`: nobody logs in to it any more."""
    if not access.enabled(settings):
        return
    with _lock:
        _logins_written.pop((namespace, server), None)
    try:
        _patch(kube, namespace, {access.logins_key(server): None})
    except ApiError as e:
        if e.status != 404:
            raise


def _patch(kube: Kube, namespace: str, data: dict[str, str | None]) -> None:
    kube.request(
        "PATCH",
        kube.resource("v1", "Secret").path(namespace, access.LOGINS_SECRET),
        body={"data": data},
        content_type="application/merge-patch+json",
    )
