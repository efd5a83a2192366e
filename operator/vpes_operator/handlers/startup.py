"""Operator start-up: kopf settings, the API client, platform settings in `memo`,
the CRDs Established before any watch, and the progress that readiness and
liveness are judged from."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from .. import GROUP, VERSION, health, naming
from ..clients import inventory
from ..clients.kube import Kube
from ..settings import OperatorSettings


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = naming.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=naming.KOPF_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=naming.KOPF_PREFIX, key="last-handled-configuration"
    )
    # Our own events are posted on transitions; kopf's per-handler chatter is not.
    settings.posting.level = logging.WARNING
    # Concurrency is bounded where the work is: every handler is synchronous and
    # runs in this pool of threads, so at most `max_workers` reconciles run at
    # once, and they share the API client's connection pool.
    settings.execution.max_workers = 8
    # No cap on kopf's per-object workers (an asyncio task and a queue each,
    # gone after idle_timeout): kopf holds every handler until every object is
    # indexed, and it counts an object as "not yet indexed" before its worker
    # exists, so a cap below the number of objects deadlocks the start-up.
    settings.queueing.worker_limit = None
    settings.queueing.idle_timeout = 5.0
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    settings.networking.request_timeout = 60


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> None:
    platform = OperatorSettings.from_env()
    memo.settings = platform
    memo.kube = Kube.connect(platform.field_manager)
    configure_kopf(settings)
    # Watches start only after the start-up handlers: none begins on a CRD that
    # the API server cannot serve yet.
    await inventory.wait_established(memo.kube)
    present = await asyncio.to_thread(
        inventory.server_generations, memo.kube, health.HEALTH.namespaces
    )
    health.HEALTH.started(expected_servers=len(present))
    index: kopf.Index[str, int] = kwargs["server_generations"]
    kube = memo.kube

    def listed() -> list[tuple[str, int]]:
        return inventory.server_generations(kube, health.HEALTH.namespaces)

    memo.health_task = asyncio.create_task(health.assess_forever(health.HEALTH, index, listed))


@kopf.on.cleanup()
async def stop_health(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "health_task", None)
    if task is not None:
        task.cancel()


@kopf.index(GROUP, VERSION, "personalmailservers")
async def server_generations(uid: str, meta: kopf.Meta, **_: Any) -> dict[str, int]:
    """Every server the watch delivered that a handler will take, with its generation:
    the work to be done (an empty mapping drops a server from the index)."""
    if not inventory.awaits_handler(meta):
        return {}
    return {uid: int(meta.get("generation") or 0)}
