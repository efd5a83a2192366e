"""A fleet simulated for the planner's tests: servers whose image and claim the
planner's moves change, a clock, and a health gate the test decides."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from vpes_operator.fleet import planner
from vpes_operator.models.fleet import FleetUpgradeSpec, FleetUpgradeStatus

OLD = "registry.test/vpes-tenant:1"
NEW = "registry.test/vpes-tenant:2"
T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)

HealthRule = Callable[[planner.Key], planner.Health]


def healthy(_: planner.Key) -> planner.Health:
    return planner.Health(True)


def never(_: planner.Key) -> planner.Health:
    return planner.Health(False, "SMTP on x:25 did not answer: refused")


@dataclasses.dataclass
class Fleet:
    """The servers as the controller would observe them, changed by each step's moves."""

    servers: dict[planner.Key, planner.Server]
    spec: FleetUpgradeSpec
    name: str = "up"
    status: FleetUpgradeStatus = dataclasses.field(default_factory=FleetUpgradeStatus)
    now: dt.datetime = T0
    health: HealthRule = healthy

    @classmethod
    def of(cls, count: int, **spec: Any) -> Fleet:
        servers = {
            (f"ns{i % 3}", f"s{i:02d}"): planner.Server(f"ns{i % 3}", f"s{i:02d}", None)
            for i in range(count)
        }
        return cls(servers, FleetUpgradeSpec.model_validate({"image": NEW, **spec}))

    def step(self, seconds: float = 10.0) -> planner.Plan:
        """One planner step, its moves applied to the fleet and its status kept."""
        self.now += dt.timedelta(seconds=seconds)
        health = {
            (m.namespace, m.name): self.health((m.namespace, m.name)) for m in self.status.wave
        }
        plan = planner.plan(
            planner.Inputs(
                name=self.name,
                spec=self.spec,
                status=self.status,
                servers=sorted(self.servers.values(), key=lambda s: s.key),
                health=health,
                now=self.now,
                default_image=OLD,
            )
        )
        for move in plan.moves:
            key = (move.namespace, move.name)
            self.servers[key] = dataclasses.replace(
                self.servers[key], image=move.image, claimed_by=self.name if move.claim else None
            )
        self.status = plan.status
        return plan

    def wave(self) -> list[str]:
        return [m.name for m in self.status.wave]

    def on(self, image: str) -> list[str]:
        return sorted(s.name for s in self.servers.values() if (s.image or OLD) == image)

    def set(self, name: str, **changes: Any) -> None:
        key = next(k for k in self.servers if k[1] == name)
        self.servers[key] = dataclasses.replace(self.servers[key], **changes)
