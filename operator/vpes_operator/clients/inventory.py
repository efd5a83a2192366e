"""What the operator reads about its own kinds: are the CRDs Established, how
many servers exist, which generation each one is at.

A server counts as work only while a handler will take it (see `awaits_handler`).

The operator waits for its CRDs before kopf starts watching: right after
`helm install` the API server may still answer `429 storage is
(re)initializing` for a new CRD, and a watch that begins with errors backs off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from .. import GROUP, VERSION, naming
from ..models.common import ObjectMeta
from .kube import ApiError, Kube

log = logging.getLogger(__name__)
PLURALS = ("personalmailservers", "mailplans", "mailbackups", "mailrestores")
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"


def crd_names(plurals: Iterable[str] = PLURALS) -> list[str]:
    return [f"{plural}.{GROUP}" for plural in plurals]


def not_established(kube: Kube, names: Iterable[str]) -> list[str]:
    """The CRDs of `names` that are missing or not yet Established, each with why."""
    missing = []
    for name in names:
        try:
            crd = kube.request("GET", CRD_PATH.format(name=name))
        except ApiError as e:
            missing.append(f"{name}: {'not installed' if e.status == 404 else e.message}")
            continue
        conditions = {c.get("type"): c for c in (crd.get("status") or {}).get("conditions", [])}
        established = conditions.get("Established") or {}
        if established.get("status") != "True":
            why = established.get("message") or "not Established yet"
            missing.append(f"{name}: {why}")
    return missing


async def wait_established(
    kube: Kube,
    names: Iterable[str] | None = None,
    *,
    interval: float = 1.0,
    log_every: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once every CRD is Established; say what is missing every `log_every` s.

    It never gives up: until the CRDs exist nothing can be watched, and the
    operator stays not ready (its readiness probe says so) rather than crash.
    """
    wanted = list(names if names is not None else crd_names())
    last_log = -log_every
    while True:
        try:
            missing = await asyncio.to_thread(not_established, kube, wanted)
        except Exception as e:  # the API server itself is not there yet
            missing = [f"the API server: {e}"]
        if not missing:
            return
        if clock() - last_log >= log_every:
            log.warning("waiting for the CRDs: %s", "; ".join(missing))
            last_log = clock()
        await asyncio.sleep(interval)


def server_paths(namespaces: Iterable[str] = ()) -> list[str]:
    """The list paths of PersonalMailServers in the watched namespaces (all when none)."""
    return namespaced_paths(f"/apis/{GROUP}/{VERSION}/personalmailservers", namespaces)


def list_metadata(kube: Kube, path: str, labels: str = "") -> list[ObjectMeta]:
    """The metadata of every object a list path holds, in pages of 500 (no specs)."""
    found: list[ObjectMeta] = []
    query = {"limit": "500", **({"labelSelector": labels} if labels else {})}
    while True:
        page = kube.request("GET", path, query=query, accept=METADATA_LIST)
        found.extend(
            ObjectMeta.model_validate(item.get("metadata") or {})
            for item in page.get("items") or []
        )
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return found
        query = {**query, "continue": token}


def namespaced_paths(path: str, namespaces: Iterable[str] = ()) -> list[str]:
    """A cluster-wide list path ("/api/v1/services") → one per watched namespace."""
    watched = list(namespaces)
    if not watched:
        return [path]
    head, _, plural = path.rpartition("/")
    return [f"{head}/namespaces/{ns}/{plural}" for ns in watched]


def awaits_handler(meta: ObjectMeta, finalizer: str = naming.FINALIZER) -> bool:
    """Whether a handler will take this server: not when it is being deleted and our
    finalizer is gone (its cleanup ran; another finalizer holds it), as nothing runs then."""
    if not meta.deletion_timestamp:
        return True
    return finalizer in meta.finalizers


def server_generations(kube: Kube, namespaces: Iterable[str] = ()) -> list[tuple[str, int]]:
    """(uid, generation) of every server, from metadata-only pages: the API's own view,
    independent of the operator's watch (so a stalled watch shows as waiting work)."""
    return [
        (meta.uid, meta.generation or 0)
        for path in server_paths(namespaces)
        for meta in list_metadata(kube, path)
        if awaits_handler(meta)
    ]
