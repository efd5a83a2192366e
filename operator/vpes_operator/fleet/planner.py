"""The fleet upgrade's planner: pure. Given the selected servers as observed, the health
of the wave in flight, the spec and the status so far, it says what to do next: which
servers to move now, whether the wave is done, which to roll back, and the new status.

The controller (controller.py) observes and applies; nothing here reads a clock or
the API. A step is idempotent: planning again from what the last step wrote asks for
the same moves (a move already made is not asked for again).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..conditions import Event
from ..models.fleet import (
    TERMINAL,
    FleetPhase,
    FleetUpgradeSpec,
    FleetUpgradeStatus,
    ServerOutcome,
    WaveMember,
    resolve,
)

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Server:
    """A selected server as observed."""

    namespace: str
    name: str
    image: str | None  # its own image (annotation); None: the fleet's default
    claimed_by: str | None = None  # the live FleetUpgrade moving it, if any
    busy: str | None = None  # the backup or restore running on it, if any
    suspended: bool = False  # no pod: the gate cannot check it

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class Health:
    """The health gate's verdict on one server of the wave."""

    ok: bool
    detail: str = ""
    final: bool = False  # it cannot pass any more: no need to wait for the timeout


@dataclass(frozen=True)
class Move:
    """Set a server's image (None: back to the fleet's default) and its claim."""

    namespace: str
    name: str
    image: str | None
    claim: bool  # True: claimed by this upgrade; False: released


@dataclass
class Plan:
    """What to do now, and the status to write."""

    status: FleetUpgradeStatus
    moves: list[Move] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    passed: list[WaveMember] = field(default_factory=list)  # the wave that passed the gate now

    @property
    def terminal(self) -> bool:
        return self.status.phase in TERMINAL


@dataclass(frozen=True)
class Inputs:
    """Everything the planner looks at."""

    name: str  # this FleetUpgrade's
    spec: FleetUpgradeSpec
    status: FleetUpgradeStatus
    servers: list[Server]
    health: dict[Key, Health]
    now: dt.datetime
    default_image: str  # the fleet's (settings.tenant_image)

    def effective(self, server: Server) -> str:
        return server.image or self.default_image


def _names(keys: list[Key]) -> str:
    return ", ".join(f"{ns}/{name}" for ns, name in keys)


def _refused(inputs: Inputs) -> list[ServerOutcome]:
    return [
        ServerOutcome(
            namespace=s.namespace,
            name=s.name,
            reason="ClaimedByOther",
            message=f"FleetUpgrade {s.claimed_by} is moving this server; "
            "this upgrade leaves it alone",
        )
        for s in inputs.servers
        if s.claimed_by not in (None, inputs.name)
    ]


def plan(inputs: Inputs) -> Plan:
    """The next step of the upgrade."""
    status = inputs.status.model_copy(deep=True)
    out = Plan(status=status)
    if status.phase in TERMINAL:
        return out
    refused = _refused(inputs)
    known = {(o.namespace, o.name) for o in status.refused}
    out.events += [
        Event("Warning", "ClaimedByOther", f"{r.namespace}/{r.name}: {r.message}")
        for r in refused
        if (r.namespace, r.name) not in known
    ]
    status.refused = refused
    refused_keys = {(r.namespace, r.name) for r in refused}
    mine = [s for s in inputs.servers if s.key not in refused_keys]
    if status.wave:
        _gate(inputs, mine, out)
    if not status.wave and status.phase not in TERMINAL:
        _next_wave(inputs, mine, out)
    elif status.wave and status.phase not in TERMINAL and inputs.spec.paused:
        status.phase = FleetPhase.PAUSED
        status.message = f"paused; the wave in flight is still checked: {status.message}"
    _count(inputs, mine, out)
    return out


def _gate(inputs: Inputs, mine: list[Server], out: Plan) -> None:
    """The wave in flight: still moving, done, or failed (and rolled back)."""
    status = out.status
    present = {s.key: s for s in mine}
    wave = [m for m in status.wave if (m.namespace, m.name) in present]  # deleted: dropped
    status.wave = wave
    for m in wave:  # a move the last step could not make is made now
        if present[(m.namespace, m.name)].image != inputs.spec.target_image:
            out.moves.append(Move(m.namespace, m.name, inputs.spec.target_image, claim=True))
    health = {
        (m.namespace, m.name): inputs.health.get((m.namespace, m.name), Health(False, "unchecked"))
        for m in wave
    }
    if all(h.ok for h in health.values()):
        if wave:
            out.events.append(
                Event(
                    "Normal",
                    "WaveSucceeded",
                    f"wave {status.current_wave} passed the health gate: {_names(list(health))}",
                )
            )
        out.passed = wave
        status.wave = []
        status.wave_started_at = None
        return
    started = status.wave_started_at or inputs.now
    if (inputs.now - started).total_seconds() < inputs.spec.health_timeout_seconds:
        waiting = [k for k, h in health.items() if not h.ok]
        status.message = f"wave {status.current_wave}: waiting for the health gate of " + (
            _names(waiting)
        )
        return
    _roll_back(inputs, health, out)


def _roll_back(inputs: Inputs, health: dict[Key, Health], out: Plan) -> None:
    status = out.status
    failed = [k for k, h in health.items() if not h.ok]
    status.failures = [
        ServerOutcome(
            namespace=ns,
            name=name,
            reason="HealthGateFailed",
            message=health[(ns, name)].detail or "did not pass the health gate",
        )
        for ns, name in failed
    ]
    out.moves = [
        Move(m.namespace, m.name, m.previous_image, claim=False) for m in status.wave
    ] + _releases(inputs, {(m.namespace, m.name) for m in status.wave})
    details = "; ".join(f"{ns}/{n}: {health[(ns, n)].detail}" for ns, n in failed)
    status.phase = FleetPhase.ROLLED_BACK
    status.message = (
        f"wave {status.current_wave} failed the health gate within "
        f"{inputs.spec.health_timeout_seconds}s ({details}); rolled back "
        f"{_names([(m.namespace, m.name) for m in status.wave])} to their previous images"
    )
    out.events.append(Event("Warning", "RolledBack", status.message))


def _releases(inputs: Inputs, skip: set[Key]) -> list[Move]:
    """Every claim this upgrade holds (but `skip`) given back, the image kept."""
    return [
        Move(s.namespace, s.name, s.image, claim=False)
        for s in inputs.servers
        if s.claimed_by == inputs.name and s.key not in skip
    ]


def _wave_size(inputs: Inputs, total: int) -> tuple[int, bool]:
    """How many servers the next wave moves, and whether it is the canary."""
    spec = inputs.spec
    if inputs.status.current_wave == 0:
        canary = resolve(spec.canary, total, round_up=True)
        if canary > 0:
            return canary, True
    return max(1, resolve(spec.max_unavailable, total, round_up=False)), False


def _next_wave(inputs: Inputs, mine: list[Server], out: Plan) -> None:
    """No wave in flight: finish, pause, wait, or start the next wave."""
    status = out.status
    pending = sorted(
        (s for s in mine if inputs.effective(s) != inputs.spec.target_image), key=lambda s: s.key
    )
    if not pending:
        status.phase = FleetPhase.SUCCEEDED
        status.message = f"{len(mine)} servers run {inputs.spec.target_image}"
        if status.deferred:
            status.message += (
                f"; {len(status.deferred)} of them suspended, moved without the health "
                "gate (each starts on it when resumed)"
            )
        if status.refused:
            status.message += f"; {len(status.refused)} left alone (moved by another upgrade)"
        out.moves += _releases(inputs, set())
        out.events.append(Event("Normal", "Succeeded", status.message))
        return
    if inputs.spec.paused:
        status.phase = FleetPhase.PAUSED
        status.message = f"paused after wave {status.current_wave}; {len(pending)} to move"
        return
    ready = [s for s in pending if s.busy is None and not s.suspended]
    if not ready and _defer_suspended(inputs, pending, out):
        return
    if not ready:
        status.message = "waiting for servers that cannot move yet: " + "; ".join(
            f"{s.namespace}/{s.name} ({s.busy or 'suspended'})" for s in pending
        )
        if status.current_wave == 0 and any(s.suspended for s in pending):
            status.message += (
                " (a suspended server moves once another server proved the image, or when "
                "it is resumed)"
            )
        if status.phase in (None, FleetPhase.PAUSED):
            status.phase = FleetPhase.PENDING
        return
    size, canary = _wave_size(inputs, len(mine))
    chosen = ready[:size]
    status.current_wave += 1
    status.wave_started_at = inputs.now
    status.wave = [
        WaveMember(namespace=s.namespace, name=s.name, previous_image=s.image) for s in chosen
    ]
    out.moves += [Move(s.namespace, s.name, inputs.spec.target_image, claim=True) for s in chosen]
    status.phase = FleetPhase.CANARY if canary else FleetPhase.ROLLING
    what = "canary wave" if canary else "wave"
    status.message = f"{what} {status.current_wave}: moving {_names([s.key for s in chosen])}"
    out.events.append(
        Event("Normal", "WaveStarted", f"{status.message} to {inputs.spec.target_image}")
    )


def _defer_suspended(inputs: Inputs, pending: list[Server], out: Plan) -> bool:
    """Only suspended servers are left (besides busy ones): once a wave passed the gate,
    they get the image unchecked (no pod to check; each starts on it when resumed)
    and are named in `deferred`. Before any wave passed, nothing proves the image:
    they wait."""
    asleep = [s for s in pending if s.suspended and s.busy is None]
    if not asleep or out.status.current_wave == 0:
        return False
    status = out.status
    known = {(d.namespace, d.name) for d in status.deferred}  # a step's moves may be retried
    status.deferred += [
        ServerOutcome(
            namespace=s.namespace,
            name=s.name,
            reason="Suspended",
            message=f"suspended: moved to {inputs.spec.target_image} without the health gate; "
            "it starts on it when resumed",
        )
        for s in asleep
        if s.key not in known
    ]
    out.moves += [Move(s.namespace, s.name, inputs.spec.target_image, claim=False) for s in asleep]
    out.events.append(
        Event(
            "Normal",
            "SuspendedMoved",
            f"{_names([s.key for s in asleep])}: suspended, moved without the health gate "
            "(each starts on the image when resumed)",
        )
    )
    return True


def _count(inputs: Inputs, mine: list[Server], out: Plan) -> None:
    status = out.status
    # Rolled back: the wave stays in the status (what was rolled back), not upgraded.
    in_wave = {(m.namespace, m.name) for m in status.wave}
    deferred = {(d.namespace, d.name) for d in status.deferred}
    on_target = [
        s
        for s in mine
        if inputs.effective(s) == inputs.spec.target_image and s.key not in in_wave | deferred
    ]
    status.total = len(mine)
    status.upgraded = len(on_target)
    status.pending = len(mine) - status.upgraded - len(deferred & {s.key for s in mine})
    status.failed = len(status.failures)
    status.waiting = len(
        [
            s
            for s in mine
            if (s.busy is not None or s.suspended)
            and inputs.effective(s) != inputs.spec.target_image
            and s.key not in deferred
        ]
    )


def abandon(name: str, status: FleetUpgradeStatus, servers: list[Server]) -> list[Move]:
    """The upgrade `name` is deleted: its wave in flight goes back to each server's
    previous image (nothing has checked it), every other claim it holds is given back
    with the image kept (those servers passed the gate). An ended upgrade holds none."""
    if status.phase in TERMINAL:
        return []
    mine = {s.key: s for s in servers if s.claimed_by == name}
    back = [
        Move(m.namespace, m.name, m.previous_image, claim=False)
        for m in status.wave
        if (m.namespace, m.name) in mine
    ]
    moved = {(m.namespace, m.name) for m in back}
    return back + [
        Move(s.namespace, s.name, s.image, claim=False) for s in mine.values() if s.key not in moved
    ]
