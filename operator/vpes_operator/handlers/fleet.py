"""FleetUpgrade handlers: a timer advances each upgrade until it ends (Succeeded,
RolledBack or Failed); each tick does the next step from what it observes, so a
restarted operator continues where the last one stopped. An upgrade moves the
tenants to an image (fleet/controller.py) or the edge to new antispam rules
(fleet/antispam_controller.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import kopf

from .. import GROUP, VERSION, health
from ..fleet import antispam_controller, controller
from ..fleet.probe import LiveProbe
from ..fleet.report import LiveReader
from ..models.fleet import TERMINAL, FleetUpgrade
from ..settings import OperatorSettings
from .events import post

_SETTINGS = OperatorSettings.from_env()  # kopf fixes timer intervals at registration


def _running(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in TERMINAL


@kopf.timer(
    GROUP, VERSION, "fleetupgrades", id="advance", interval=_SETTINGS.fleet_tick, when=_running
)
def fleet_timer(body: kopf.Body, memo: Any, **_: Any) -> None:
    settings: OperatorSettings = memo.settings
    upgrade = FleetUpgrade.model_validate(dict(body))
    now = dt.datetime.now(dt.UTC)
    if upgrade.spec.antispam is not None:
        post(body, antispam_controller.step(memo.kube, upgrade, settings, now=now).events)
        return
    probe = LiveProbe(memo.kube, settings.cluster_domain, settings.fleet_probe_timeout)
    plan = controller.step(
        memo.kube,
        upgrade,
        probe,
        LiveReader(memo.kube),
        default_image=settings.tenant_image,
        now=now,
        namespaces=health.HEALTH.namespaces,
    )
    post(body, plan.events)


@kopf.on.delete(GROUP, VERSION, "fleetupgrades", id="abandon")
def fleet_deleted(body: kopf.Body, memo: Any, logger: kopf.Logger, **_: Any) -> None:
    """Deleting a running upgrade stops it: the wave in flight (unchecked) goes back to
    its previous images and the claims are given back; servers that passed stay. An
    antispam upgrade's canary goes, and promoted rules not yet past the gate go back."""
    upgrade = FleetUpgrade.model_validate(dict(body))
    if upgrade.spec.antispam is not None:
        writes = antispam_controller.abandon(memo.kube, upgrade, memo.settings)
        if writes.live_rules is not None:
            logger.info("deleted while rolling out: the previous antispam rules are back")
        return
    moves = controller.abandon(memo.kube, upgrade, health.HEALTH.namespaces)
    wave = {(m.namespace, m.name) for m in upgrade.status.wave}
    back = [f"{m.namespace}/{m.name}" for m in moves if (m.namespace, m.name) in wave]
    if moves:
        logger.info(
            "deleted while %s: %d claims given back%s",
            upgrade.status.phase,
            len(moves),
            f"; the wave in flight back to its previous images: {', '.join(back)}" if back else "",
        )
