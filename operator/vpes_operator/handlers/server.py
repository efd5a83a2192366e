"""PersonalMailServer handlers: reconcile on create/update/resume, clean up on delete."""

from __future__ import annotations

from typing import Any

import kopf

from .. import GROUP, VERSION, health, metrics, reconcile
from ..errors import ConfigError, WaitingError
from . import backup
from .backup import NO_INDEX
from .events import post

PLURAL = "personalmailservers"
KIND = "PersonalMailServer"


@kopf.index(GROUP, VERSION, "mailplans")
def plans(name: str, spec: kopf.Spec, **_: Any) -> dict[str, dict[str, Any]]:
    """MailPlans by name, kept in memory from their watch: no GET per reconcile."""
    return {name: dict(spec)}


def plan_spec(index: kopf.Index[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    for spec in index.get(name, []):
        return spec
    return None


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@health.tracks
def reconcile_server(
    body: kopf.Body,
    spec: kopf.Spec,
    memo: Any,
    plans: kopf.Index[str, dict[str, Any]] = NO_INDEX,
    **_: Any,
) -> None:
    result = "error"
    try:
        with metrics.RECONCILE_SECONDS.labels(KIND).time():
            outcome = reconcile.reconcile(
                memo.kube, memo.settings, dict(body), plan_spec(plans, spec.get("plan", ""))
            )
        post(body, outcome.events)
        if isinstance(outcome.error, WaitingError):
            result = "waiting"
            raise kopf.TemporaryError(outcome.error.message, delay=outcome.error.delay)
        if isinstance(outcome.error, ConfigError):
            result = "invalid"
            raise kopf.PermanentError(outcome.error.message)
        result = "ok"
    finally:
        metrics.RECONCILES.labels(KIND, result).inc()


@kopf.on.delete(GROUP, VERSION, PLURAL)
@health.tracks
def server_deleted(
    body: kopf.Body, name: str, namespace: str | None, memo: Any, logger: kopf.Logger, **_: Any
) -> None:
    """Children inside the cluster go by owner references (garbage collection).

    The finalizer this handler holds is where cleanup outside the cluster
    hooks in: the server's backups are kept for the provider's retention (or
    removed now), its DNS records go in the DNS handler.
    """
    backup.server_deleted(memo, dict(body), logger)
    logger.info("server %s/%s deleted; its objects are garbage-collected", namespace, name)
