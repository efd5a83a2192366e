"""Operator start-up: kopf settings, the API client, platform settings in `memo`,
the CRDs Established before any watch, and the progress that readiness and
liveness are judged from."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from .. import health, naming, watched
from ..clients import inventory
from ..clients.kube import Kube
from ..settings import OperatorSettings
from . import events
from .background import cancel

WORKER_LIMIT = 64


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
    # kopf posts its events one at a time: a refused one (its object's namespace
    # being deleted) retried for 12 s would hold up every later one (ours go
    # straight to the API, see `events`).
    settings.posting.logging_backoffs = (1,)
    # Concurrency is bounded where the work is: every handler is synchronous and
    # runs in this pool of threads, so at most `max_workers` reconciles run at
    # once, and they share the API client's connection pool.
    settings.execution.max_workers = 8
    # A cap on kopf's per-object workers bounds the operator's memory: every
    # object waiting for a handler thread holds a prepared call (measured: 149
    # MiB at 300 servers with the cap, 253-278 MiB without). It is safe because
    # the operator has no kopf index: kopf holds every handler until every
    # object of an indexed kind is indexed, and counts an object "not yet
    # indexed" before its worker exists, so with an index a cap below the
    # number of objects deadlocks the start-up (see `watched.py`).
    settings.queueing.worker_limit = WORKER_LIMIT
    settings.queueing.idle_timeout = 5.0
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    settings.networking.request_timeout = 60


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    platform = OperatorSettings.from_env()
    memo.settings = platform
    memo.kube = Kube.connect(platform.field_manager)
    events.use(memo.kube)
    configure_kopf(settings)
    # Watches start only after the start-up handlers: none begins on a CRD that
    # the API server cannot serve yet.
    await inventory.wait_established(memo.kube)
    present = await asyncio.to_thread(
        inventory.server_generations, memo.kube, health.HEALTH.namespaces
    )
    health.HEALTH.started(expected_servers=len(present))
    kube = memo.kube

    def listed() -> list[tuple[str, int]]:
        return inventory.server_generations(kube, health.HEALTH.namespaces)

    memo.health_task = asyncio.create_task(
        health.assess_forever(health.HEALTH, watched.GENERATIONS, listed)
    )


@kopf.on.cleanup()
async def stop_health(memo: kopf.Memo, **_: Any) -> None:
    cancel(memo, "health_task")
