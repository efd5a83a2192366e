"""The antispam FleetUpgrade's planner: pure. From what the controller observed (the
admin's rules, the live and canary ConfigMaps, the antispam Deployment's annotation,
the gate's verdict on the step in flight) it says what to do next and the status.

Steps (status.currentWave): 0 nothing started; 1 the canary runs the new rules;
2 promoted: the live ConfigMap holds them and the antispam Deployment rolls.
`paused` holds before the canary and before the promotion; the step in flight is
still checked. A failed gate rolls back: the canary goes, and after a promotion the
previous rules and annotation come back. A step is idempotent: planning again from
what the last step wrote asks for the same writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..conditions import Event
from ..models.fleet import (
    TERMINAL,
    AntispamStatus,
    FleetPhase,
    FleetUpgradeSpec,
    FleetUpgradeStatus,
)
from .antispam import check_rules, rules_hash
from .planner import Health

CANARY, ROLLOUT = 1, 2


@dataclass(frozen=True)
class Observed:
    """What the controller read."""

    source: dict[str, str] | None  # the admin's ConfigMap (None: not found)
    tried: dict[str, str] | None  # the canary's ConfigMap (None: not found)
    live_rules: dict[str, str]  # the live ConfigMap's (empty: none)
    live_hash: str | None  # the antispam pod template's annotation
    deployment: bool  # the chart's antispam Deployment exists
    canary: bool  # the canary Deployment exists
    health: Health | None  # the gate's verdict on the step in flight (None: unchecked)
    blocked_by: str | None = None  # another antispam upgrade that runs


@dataclass
class Writes:
    """What the controller writes, in this order."""

    canary_rules: dict[str, str] | None = None  # the canary ConfigMap and Deployment
    live_rules: dict[str, str] | None = None  # the live ConfigMap's data
    set_annotation: bool = False
    annotation: str | None = None  # the pod template's rules hash (None: removed)
    remove_canary: bool = False


@dataclass
class AntispamPlan:
    status: FleetUpgradeStatus
    writes: Writes = field(default_factory=Writes)
    events: list[Event] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status.phase in TERMINAL


@dataclass(frozen=True)
class Inputs:
    spec: FleetUpgradeSpec
    status: FleetUpgradeStatus
    observed: Observed
    now: dt.datetime
    source_name: str  # namespace/name of the admin's ConfigMap, for messages
    live_config_map: str


def plan(inputs: Inputs) -> AntispamPlan:
    status = inputs.status.model_copy(deep=True)
    out = AntispamPlan(status=status)
    if status.phase in TERMINAL:
        return out
    if status.antispam is None:
        status.antispam = AntispamStatus(live_config_map=inputs.live_config_map)
    status.antispam.live_hash = inputs.observed.live_hash
    if status.current_wave == 0:
        _start(inputs, out)
    elif status.current_wave == CANARY:
        _canary(inputs, out)
    else:
        _rollout(inputs, out)
    return out


def _end(out: AntispamPlan, phase: FleetPhase, message: str) -> None:
    out.status.phase = phase
    out.status.message = message
    out.status.wave_started_at = None
    if phase == FleetPhase.SUCCEEDED:
        out.events.append(Event("Normal", str(phase), message))
    else:
        out.events.append(Event("Warning", str(phase), message))


def _start(inputs: Inputs, out: AntispamPlan) -> None:
    """Nothing started: check the rules, then start the canary (unless paused)."""
    status, seen = out.status, inputs.observed
    assert status.antispam is not None
    if not seen.deployment:
        _end(out, FleetPhase.FAILED, "the edge runs no antispam Deployment "
             "(the chart's edge.antispam.enabled is false)")  # fmt: skip
        return
    if seen.source is None:
        status.phase = FleetPhase.PENDING
        status.message = f"waiting for the ConfigMap {inputs.source_name} (not found)"
        return
    problem = check_rules(seen.source)
    if problem:
        _end(
            out, FleetPhase.FAILED, f"the ConfigMap {inputs.source_name} cannot be used: {problem}"
        )
        return
    digest = rules_hash(seen.source)
    status.antispam.target_hash = digest
    status.antispam.files = sorted(seen.source)
    if digest == seen.live_hash:
        _end(out, FleetPhase.SUCCEEDED, f"the edge's antispam already runs these rules ({digest})")
        return
    if seen.blocked_by:
        status.phase = FleetPhase.PENDING
        status.message = f"waiting: FleetUpgrade {seen.blocked_by} is moving the edge's rules"
        return
    if inputs.spec.paused:
        status.phase = FleetPhase.PAUSED
        status.message = "paused before the canary"
        return
    status.current_wave = CANARY
    status.wave_started_at = inputs.now
    status.phase = FleetPhase.CANARY
    status.message = (
        f"canary: one antispam pod with the rules {digest} ({', '.join(status.antispam.files)})"
    )
    out.writes.canary_rules = dict(seen.source)
    out.events.append(Event("Normal", "CanaryStarted", status.message))


def _tried_rules(inputs: Inputs) -> dict[str, str] | None:
    """The new rules as the canary got them (or, before its ConfigMap was written, as
    the admin's ConfigMap still has them); None: changed since the upgrade started."""
    target = inputs.status.antispam.target_hash if inputs.status.antispam else None
    for data in (inputs.observed.tried, inputs.observed.source):
        if data is not None and rules_hash(data) == target:
            return data
    return None


def _timed_out(inputs: Inputs) -> bool:
    started = inputs.status.wave_started_at or inputs.now
    return (inputs.now - started).total_seconds() >= inputs.spec.health_timeout_seconds


def _canary(inputs: Inputs, out: AntispamPlan) -> None:
    status, seen = out.status, inputs.observed
    assert status.antispam is not None
    rules = _tried_rules(inputs)
    if rules is None:
        out.writes.remove_canary = True
        _end(out, FleetPhase.ROLLED_BACK, f"the ConfigMap {inputs.source_name} changed while "
             "its canary ran; the canary was removed, the live rules are unchanged; create a "
             "new FleetUpgrade for the new content")  # fmt: skip
        return
    if not seen.canary or seen.tried is None:
        out.writes.canary_rules = rules  # a write the last step could not make
    health = seen.health or Health(False, "unchecked")
    if not health.ok:
        if health.final or _timed_out(inputs):
            out.writes.remove_canary = True
            how = (
                "Rspamd refused the new rules in the canary"
                if health.final
                else "the canary with the new rules failed the health gate within "
                f"{inputs.spec.health_timeout_seconds}s"
            )
            _end(out, FleetPhase.ROLLED_BACK, f"{how} ({health.detail}); the canary was "
                 "removed, the live rules are unchanged")  # fmt: skip
            return
        status.phase = FleetPhase.PAUSED if inputs.spec.paused else FleetPhase.CANARY
        status.message = f"canary: waiting for the health gate: {health.detail}"
        return
    if inputs.spec.paused:
        status.phase = FleetPhase.PAUSED
        status.message = "the canary passed the health gate; paused before the promotion"
        return
    _promote(inputs, out, rules)


def _promote(inputs: Inputs, out: AntispamPlan, rules: dict[str, str]) -> None:
    status, seen = out.status, inputs.observed
    assert status.antispam is not None
    # The rollback's copy, in the status before anything live changes.
    status.antispam.previous_hash = seen.live_hash
    status.antispam.previous_rules = dict(inputs.observed.live_rules)
    status.current_wave = ROLLOUT
    status.wave_started_at = inputs.now
    status.phase = FleetPhase.ROLLING
    status.message = (
        f"the canary passed the health gate; the antispam Deployment rolls to the rules "
        f"{status.antispam.target_hash}"
    )
    out.writes.live_rules = rules
    out.writes.set_annotation = True
    out.writes.annotation = status.antispam.target_hash
    out.events.append(Event("Normal", "Promoted", status.message))


def _rollout(inputs: Inputs, out: AntispamPlan) -> None:
    """Promoted: the Deployment rolls; passed, the canary goes; failed, roll back."""
    status, seen = out.status, inputs.observed
    assert status.antispam is not None
    target = status.antispam.target_hash
    rules = _tried_rules(inputs)
    if rules is not None and (seen.live_hash != target or rules_hash(seen.live_rules) != target):
        out.writes.live_rules = rules  # a write the last step could not make
        out.writes.set_annotation = True
        out.writes.annotation = target
    health = seen.health or Health(False, "unchecked")
    if health.ok:
        out.writes.remove_canary = True
        status.antispam.live_hash = target
        status.antispam.previous_rules = None
        _end(out, FleetPhase.SUCCEEDED, f"the edge's antispam runs the rules {target} "
             f"({', '.join(status.antispam.files)}) from {inputs.live_config_map}")  # fmt: skip
        return
    if not _timed_out(inputs):
        status.phase = FleetPhase.PAUSED if inputs.spec.paused else FleetPhase.ROLLING
        status.message = (
            f"rolling out the rules {target}: waiting for the health gate: {health.detail}"
        )
        return
    out.writes.live_rules = dict(status.antispam.previous_rules or {})
    out.writes.set_annotation = True
    out.writes.annotation = status.antispam.previous_hash
    out.writes.remove_canary = True
    status.antispam.live_hash = status.antispam.previous_hash
    previous = status.antispam.previous_hash or "none"
    _end(out, FleetPhase.ROLLED_BACK, f"the antispam Deployment with the rules {target} failed "
         f"the health gate within {inputs.spec.health_timeout_seconds}s ({health.detail}); "
         f"rolled back to the previous rules ({previous})")  # fmt: skip


def abandon(status: FleetUpgradeStatus) -> Writes:
    """The upgrade is deleted while it runs: the canary goes, and rules promoted but not
    yet past the gate go back to the previous ones (as a rollback would)."""
    if status.phase in TERMINAL or status.current_wave == 0:
        return Writes()
    if status.current_wave == CANARY or status.antispam is None:
        return Writes(remove_canary=True)
    return Writes(
        live_rules=dict(status.antispam.previous_rules or {}),
        set_annotation=True,
        annotation=status.antispam.previous_hash,
        remove_canary=True,
    )
