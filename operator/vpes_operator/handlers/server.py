"""PersonalMailServer handlers: reconcile on create/update/resume, clean up on delete."""

from __future__ import annotations

from typing import Any

import kopf

from .. import API_VERSION, GROUP, VERSION, health, metrics, reconcile, watched
from ..clients import access
from ..clients.kube import Kube
from ..errors import ConfigError, WaitingError
from ..models.common import ObjectMeta
from ..models.plan import PlanJSON
from ..models.server import PersonalMailServer
from . import backup
from .events import post

PLURAL = "personalmailservers"
KIND = "PersonalMailServer"


def plan_spec(kube: Kube, name: str) -> PlanJSON | None:
    """The plan as the watch delivered it; read from the API only when the watch has
    not delivered it (yet): a server may be handled before its plan's first event."""
    spec = watched.PLANS.first(name)
    if spec is not None or not name:
        return spec
    plan = kube.get(API_VERSION, "MailPlan", None, name)
    return dict(plan.get("spec") or {}) if plan is not None else None


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@health.tracks
def reconcile_server(body: kopf.Body, memo: Any, **_: Any) -> None:
    result = "error"
    try:
        server = PersonalMailServer.model_validate(dict(body))
        with metrics.RECONCILE_SECONDS.labels(KIND).time():
            outcome = reconcile.reconcile(
                memo.kube, memo.settings, server, plan_spec(memo.kube, server.plan)
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
    backup.server_deleted(memo, ObjectMeta.model_validate(dict(body.metadata)), logger)
    if namespace and name:
        access.withdraw_logins(memo.kube, memo.settings, namespace, name)
    logger.info("server %s/%s deleted; its objects are garbage-collected", namespace, name)
