"""The fleet upgrade's controller: observe the selected servers, ask the planner, apply.

The only code of a fleet upgrade that talks to the API. One step at a time for the
whole operator (a lock): two upgrades never claim one server in a race.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from .. import API_VERSION, naming
from ..backup import results
from ..backup.runner import ACTIONS
from ..clients.kube import ApiError, Kube
from ..conditions import Event
from ..models.fleet import TERMINAL, FleetPhase, FleetUpgrade, FleetUpgradeStatus
from ..models.kube import Job
from ..models.server import PersonalMailServer
from . import planner, report
from .probe import Probe
from .report import PackageListError, PackageReader, Remembered

log = logging.getLogger(__name__)
KIND = "FleetUpgrade"
_LOCK = threading.Lock()
# A wave's servers are probed side by side, this many at a time (each probe may wait
# settings.fleet_probe_timeout for a greeting that never comes).
PROBES_AT_ONCE = 16
# The package list of the image each running upgrade's canary left, read just before
# it moved (by the upgrade's uid): the previous image's list when no other server still
# runs that image. Lost on a restart (then only such a server can give it).
_REMEMBERED: dict[str, Remembered] = {}


def live_upgrades(kube: Kube) -> set[str]:
    """FleetUpgrades that still run: only their claims hold (a claim by one that ended
    or was deleted is stale)."""
    return {
        str(u["metadata"]["name"])
        for u in kube.list(API_VERSION, KIND)
        if (u.get("status") or {}).get("phase") not in TERMINAL
    }


def busy_servers(kube: Kube, namespaces: Iterable[str | None]) -> dict[planner.Key, str]:
    """Servers with a backup or restore Job running (what backup/runner.busy refuses
    a second Job for), by (namespace, name) → which Job."""
    found: dict[planner.Key, str] = {}
    selector = f"{naming.LABEL_COMPONENT} in ({','.join(ACTIONS)})"
    for ns in namespaces:
        for job in kube.read_list(Job, ns, labels=selector):
            server = job.metadata.labels.get(naming.LABEL_SERVER)
            if server and results.job_state(job) == "Running":
                component = job.metadata.labels[naming.LABEL_COMPONENT]
                found[(job.metadata.namespace, server)] = f"{component} Job {job.metadata.name}"
    return found


def observe(kube: Kube, upgrade: FleetUpgrade, namespaces: tuple[str, ...]) -> list[planner.Server]:
    """The servers the upgrade selects, as the planner sees them."""
    spec = upgrade.spec
    query = spec.selector.query() if spec.selector else ""
    scopes: tuple[str | None, ...] = namespaces or (None,)
    listed = [s for ns in scopes for s in kube.read_list(PersonalMailServer, ns, labels=query)]
    live = live_upgrades(kube)
    busy = busy_servers(kube, scopes)
    out = []
    for s in listed:
        meta = s.metadata
        if meta.deletion_timestamp or (spec.plans and s.plan not in spec.plans):
            continue
        claim = meta.annotations.get(naming.ANNOTATION_UPGRADE)
        out.append(
            planner.Server(
                namespace=meta.namespace,
                name=meta.name,
                image=meta.annotations.get(naming.ANNOTATION_TENANT_IMAGE) or None,
                claimed_by=claim if claim in live else None,
                busy=busy.get((meta.namespace, meta.name)) or held_reason(s),
                suspended=bool(s.suspended),
            )
        )
    return sorted(out, key=lambda s: s.key)


def held_reason(server: PersonalMailServer) -> str | None:
    """Why a server waits: a restore holds it stopped (a server moved now could only
    fail the gate). A suspended one is the planner's (`Server.suspended`)."""
    restoring = server.metadata.annotations.get(naming.ANNOTATION_RESTORE)
    return f"restore {restoring}" if restoring else None


def gate(probe: Probe, upgrade: FleetUpgrade) -> dict[planner.Key, planner.Health]:
    """The health of the wave in flight's servers, probed side by side."""
    wave = [(m.namespace, m.name) for m in upgrade.status.wave]
    if not wave:
        return {}
    image = upgrade.spec.target_image
    with ThreadPoolExecutor(max_workers=min(PROBES_AT_ONCE, len(wave))) as pool:
        found = pool.map(lambda key: probe.check(key[0], key[1], image), wave)
        return dict(zip(wave, found, strict=True))


def move_server(kube: Kube, upgrade: str, move: planner.Move) -> None:
    """Write a server's image and claim; its reconcile rebuilds the StatefulSet."""
    annotations = {
        naming.ANNOTATION_TENANT_IMAGE: move.image,
        naming.ANNOTATION_UPGRADE: upgrade if move.claim else None,
    }
    try:
        kube.patch_metadata(
            API_VERSION,
            "PersonalMailServer",
            move.namespace,
            move.name,
            {"annotations": annotations},
        )
    except ApiError as e:
        if e.status != 404:  # a server deleted meanwhile has nothing to move
            raise


def write_status(kube: Kube, name: str, status: FleetUpgradeStatus) -> None:
    wanted = status.model_dump(by_alias=True, mode="json")  # None clears a field

    def mutate(obj: dict[str, object]) -> dict[str, object] | None:
        return None if obj.get("status") == status.wire() else wanted

    kube.update_status(API_VERSION, KIND, None, name, mutate)


def apply(kube: Kube, upgrade: FleetUpgrade, plan: planner.Plan) -> None:
    """Moves and status in the order that survives a crash between them: the wave (with
    each server's previous image) is written before its servers move; a rollback or
    release is made before the terminal phase (which stops the timer) is written."""
    name = upgrade.metadata.name
    if not plan.terminal:
        write_status(kube, name, plan.status)
    for move in plan.moves:
        move_server(kube, name, move)
    if plan.terminal:
        write_status(kube, name, plan.status)


def failed(upgrade: FleetUpgrade, message: str) -> planner.Plan:
    status = upgrade.status.model_copy(deep=True)
    status.phase = FleetPhase.FAILED
    status.message = message
    return planner.Plan(status=status, events=[Event("Warning", "Failed", message)])


def remember(
    reader: PackageReader, upgrade: FleetUpgrade, plan: planner.Plan, default_image: str
) -> None:
    """When the first wave starts, the list of the image its first server still runs."""
    uid = upgrade.metadata.uid
    if plan.terminal:
        _REMEMBERED.pop(uid, None)
        return
    if upgrade.status.current_wave != 0 or not plan.status.wave:
        return
    first = plan.status.wave[0]
    image = first.previous_image or default_image
    try:
        packages = reader.read(first.namespace, first.name, image)
    except PackageListError as e:
        log.info("FleetUpgrade %s: %s", upgrade.metadata.name, e)
        return
    _REMEMBERED[uid] = Remembered(image, packages)


def note_packages(
    reader: PackageReader,
    upgrade: FleetUpgrade,
    plan: planner.Plan,
    servers: list[planner.Server],
    default_image: str,
) -> None:
    """Once a wave passes the gate, what changed in the packages (until it is known)."""
    known = plan.status.packages
    if not plan.passed or (known is not None and known.message is None):
        return
    plan.status.packages = report.changes(
        reader,
        plan.passed,
        servers,
        to_image=upgrade.spec.target_image,
        default_image=default_image,
        remembered=_REMEMBERED.get(upgrade.metadata.uid),
    )


def step(
    kube: Kube,
    upgrade: FleetUpgrade,
    probe: Probe,
    packages: PackageReader,
    *,
    default_image: str,
    now: dt.datetime,
    namespaces: tuple[str, ...] = (),
) -> planner.Plan:
    """One step of one upgrade: observe, gate the wave in flight, plan, note what changed
    in the packages, apply."""
    with _LOCK:
        try:
            servers = observe(kube, upgrade, namespaces)
        except ApiError as e:
            if e.status != 400:
                raise
            plan = failed(upgrade, f"the API refused the selector: {e}")
            apply(kube, upgrade, plan)
            return plan
        health = gate(probe, upgrade)
        plan = planner.plan(
            planner.Inputs(
                name=upgrade.metadata.name,
                spec=upgrade.spec,
                status=upgrade.status,
                servers=servers,
                health=health,
                now=now,
                default_image=default_image,
            )
        )
        note_packages(packages, upgrade, plan, servers, default_image)
        remember(packages, upgrade, plan, default_image)
        apply(kube, upgrade, plan)
        return plan


def abandon(
    kube: Kube, upgrade: FleetUpgrade, namespaces: tuple[str, ...] = ()
) -> list[planner.Move]:
    """A deleted upgrade's wave in flight back to its previous images, its claims given
    back (`planner.abandon`); the moves made."""
    with _LOCK:
        _REMEMBERED.pop(upgrade.metadata.uid, None)
        try:
            servers = observe(kube, upgrade, namespaces)
        except ApiError as e:
            if e.status != 400:  # a selector the API refuses claimed nothing
                raise
            return []
        moves = planner.abandon(upgrade.metadata.name, upgrade.status, servers)
        for move in moves:
            move_server(kube, upgrade.metadata.name, move)
        return moves
