"""FleetUpgrade: move a share of the fleet's servers to a new tenant image, in waves,
or the shared edge's Rspamd to new antispam rules (a canary pod, then a rollout).

Cluster-scoped, like MailPlan: a fleet spans the customers' namespaces, and the
fleet admin (not a customer) owns it. One FleetUpgrade moves one thing: the
tenants (`image`) or the edge's rules (`antispam`). The target and the choice of
servers never change once made (create a new FleetUpgrade); the pace (canary,
maxUnavailable, the gate's timeout) and `paused` may change while it runs.
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from .. import API_VERSION
from .common import NAME_PATTERN, Model, Object, friendly, x_validation

# An image reference as a container runtime takes it: [host[:port]/]path[:tag][@digest].
_COMPONENT = r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?"
IMAGE_PATTERN = (
    rf"^{_COMPONENT}(:[0-9]+)?(/{_COMPONENT})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
IMAGE_MESSAGE = (
    "must be a tenant image reference such as registry.example/vpes-tenant:2026-12-07 "
    "(not empty, no spaces, no scheme)"
)
PERCENT_PATTERN = r"^(100|[1-9]?[0-9])%$"
POSITIVE_PERCENT_PATTERN = r"^(100|[1-9][0-9]?)%$"
LABEL_KEY_PATTERN = r"^([a-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"


def _count_or_percent(*, positive: bool, what: str) -> Any:
    """A count (an integer) or a share of the selected servers ("10%"), as a Kubernetes
    int-or-string with a CEL rule that says what is wrong in words."""
    low = 1 if positive else 0
    pattern = POSITIVE_PERCENT_PATTERN if positive else PERCENT_PATTERN
    bounds = "1%" if positive else "0%"
    message = (
        f"{what} must be a number of servers ({low} or more) or a percentage from "
        f"{bounds} to 100%, e.g. 10%"
    )
    rule = f"type(self) == int ? self >= {low} : self.matches(r'''{pattern}''')"
    return WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-validations": [{"rule": rule, "message": message}],
        }
    )


Canary = Annotated[int | str, _count_or_percent(positive=False, what="canary")]
MaxUnavailable = Annotated[int | str, _count_or_percent(positive=True, what="maxUnavailable")]


def resolve(value: int | str, total: int, *, round_up: bool) -> int:
    """A count or percentage of `total` servers, as a number of servers (at most `total`)."""
    if isinstance(value, int):
        return min(value, total)
    share = total * int(value.rstrip("%")) / 100
    return min(total, math.ceil(share) if round_up else math.floor(share))


def _check_count_or_percent(value: int | str, low: int, name: str) -> int | str:
    if isinstance(value, int):
        if value < low:
            raise ValueError(f"{name} must be {low} or more")
        return value
    text = value.strip()
    if not text.endswith("%") or not text[:-1].isdigit() or not low <= int(text[:-1]) <= 100:
        raise ValueError(f"{name} must be a number or a percentage from {low}% to 100%")
    return text


class FleetPhase(StrEnum):
    PENDING = "Pending"
    CANARY = "Canary"
    ROLLING = "Rolling"
    PAUSED = "Paused"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


TERMINAL = (FleetPhase.SUCCEEDED, FleetPhase.ROLLED_BACK, FleetPhase.FAILED)


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class SelectorRequirement(Model):
    """One requirement of a label selector, as in any Kubernetes label selector."""

    key: str = Field(max_length=317, pattern=LABEL_KEY_PATTERN, description="The label's key.")
    operator: SelectorOperator = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[Annotated[str, Field(max_length=63)]] = Field(
        default_factory=list,
        max_length=64,
        description="The values for In and NotIn (empty for Exists and DoesNotExist).",
    )


class LabelSelector(Model):
    """Which PersonalMailServers, by their labels (every requirement must hold)."""

    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels a server must carry, with these values."
    )
    match_expressions: list[SelectorRequirement] = Field(
        default_factory=list, max_length=32, description="Further requirements on labels."
    )

    def query(self) -> str:
        """The selector as the API's labelSelector query."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for r in self.match_expressions:
            if r.operator == "Exists":
                parts.append(r.key)
            elif r.operator == "DoesNotExist":
                parts.append(f"!{r.key}")
            else:
                op = "in" if r.operator == "In" else "notin"
                parts.append(f"{r.key} {op} ({','.join(r.values)})")
        return ",".join(parts)


class AntispamTarget(Model):
    """New antispam rules for the shared edge's Rspamd."""

    rules_config_map: str = Field(
        max_length=253,
        pattern=NAME_PATTERN,
        json_schema_extra=friendly(
            "must be the name of a ConfigMap in the operator's namespace, "
            "such as antispam-rules-2026-12-07"
        ),
        description="A ConfigMap in the operator's namespace whose keys are Rspamd local.d "
        "file names (multimap.conf, composites.conf, groups.conf, words.map, ...: letters, "
        "digits, . _ -, ending .conf, .inc or .map; not a file the image ships) and whose "
        "values are their content. Read once, when the upgrade starts.",
    )


class FleetUpgradeSpec(Model):
    """What to move to (a tenant image or the edge's antispam rules), which servers,
    and at what pace."""

    image: str | None = Field(
        default=None,
        max_length=255,
        pattern=IMAGE_PATTERN,
        json_schema_extra=friendly(IMAGE_MESSAGE),
        description="The tenant image the selected servers move to (or set antispam).",
    )
    antispam: AntispamTarget | None = Field(
        default=None,
        description="Move the shared edge's Rspamd to new antispam rules instead: a canary "
        "pod runs them first, then the antispam Deployment rolls (or set image).",
    )
    selector: LabelSelector | None = Field(
        default=None,
        description="Which servers, by label; every server (of `plans`) when unset.",
    )
    plans: list[Annotated[str, Field(max_length=63, pattern=NAME_PATTERN)]] = Field(
        default_factory=list,
        max_length=64,
        description="Only servers on these MailPlans; every plan when empty.",
    )
    canary: Canary = Field(
        default=1,
        description="The first wave, alone: a number of servers or a percentage of the "
        "selected ones (rounded up); 0 skips the canary.",
    )
    max_unavailable: MaxUnavailable = Field(
        default="10%",
        description="Servers moved at once in each later wave: a number or a percentage "
        "of the selected ones (rounded down, at least 1).",
    )
    paused: bool = Field(
        default=False,
        description="No new wave starts while true; the wave in flight is still checked.",
    )
    health_timeout_seconds: int = Field(
        default=600,
        ge=10,
        le=86400,
        description="How long a wave's servers have to pass the health gate (their pod "
        "runs the image, SMTP and IMAP answer) before the wave is rolled back.",
    )

    @property
    def target_image(self) -> str:
        """The tenant image of an image upgrade (not an antispam one)."""
        if self.image is None:
            raise ValueError("this FleetUpgrade moves the edge's antispam rules, not an image")
        return self.image

    @model_validator(mode="after")
    def _one_target(self) -> FleetUpgradeSpec:
        if (self.image is None) == (self.antispam is None):
            raise ValueError(ONE_TARGET_MESSAGE)
        return self

    @field_validator("canary")
    @classmethod
    def _canary(cls, value: int | str) -> int | str:
        return _check_count_or_percent(value, 0, "canary")

    @field_validator("max_unavailable")
    @classmethod
    def _max_unavailable(cls, value: int | str) -> int | str:
        return _check_count_or_percent(value, 1, "maxUnavailable")


ONE_TARGET_MESSAGE = (
    "a FleetUpgrade moves exactly one thing: set either image (the tenants' new image) "
    "or antispam.rulesConfigMap (the edge's new Rspamd rules), not both and not neither"
)
_FIXED = "cannot change once the upgrade exists; create a new FleetUpgrade"
FLEET_SPEC_VALIDATIONS = [
    x_validation("has(self.image) != has(self.antispam)", ONE_TARGET_MESSAGE),
    x_validation(
        "has(self.image) == has(oldSelf.image) && "
        "(!has(self.image) || self.image == oldSelf.image)",
        f"image {_FIXED}",
    ),
    x_validation(
        "has(self.antispam) == has(oldSelf.antispam) && "
        "(!has(self.antispam) || self.antispam == oldSelf.antispam)",
        f"antispam {_FIXED}",
    ),
    x_validation(
        "has(self.selector) == has(oldSelf.selector) && "
        "(!has(self.selector) || self.selector == oldSelf.selector)",
        f"selector {_FIXED}",
    ),
    x_validation(
        "(has(self.plans) ? self.plans : []) == (has(oldSelf.plans) ? oldSelf.plans : [])",
        f"plans {_FIXED}",
    ),
]


class WaveMember(Model):
    """A server of the wave in flight, and the image it goes back to on a rollback."""

    namespace: str = Field(description="The server's namespace.")
    name: str = Field(description="The PersonalMailServer.")
    previous_image: str | None = Field(
        default=None, description="Its image before this wave; unset: the fleet's default."
    )


class ServerOutcome(Model):
    """Why one server failed the health gate, or why it is not upgraded."""

    namespace: str = Field(description="The server's namespace.")
    name: str = Field(description="The PersonalMailServer.")
    reason: str = Field(description="CamelCase: HealthGateFailed, ClaimedByOther.")
    message: str = Field(description="What happened, for a person.")


class PackageVersion(Model):
    """A Debian package added to or removed from the image, and its version."""

    name: str = Field(description="The package.")
    version: str = Field(description="Its version (in the image that has it).")


class PackageChange(Model):
    """A Debian package whose version differs between the two images."""

    name: str = Field(description="The package.")
    from_: str = Field(alias="from", description="Its version in the image the servers left.")
    to: str = Field(description="Its version in the target image.")


class PackageChanges(Model):
    """What changed in the tenant image's Debian packages, from the lists each image
    records at build time (read from a server's usage report)."""

    from_image: str = Field(description="The image the first upgraded servers left.")
    to_image: str = Field(description="The target image.")
    summary: str = Field(
        default="", description="How many packages were upgraded, downgraded, added, removed."
    )
    upgraded: list[PackageChange] = Field(
        default_factory=list, description="Packages at a newer version (by dpkg's order)."
    )
    downgraded: list[PackageChange] = Field(
        default_factory=list, description="Packages at an older version."
    )
    added: list[PackageVersion] = Field(
        default_factory=list, description="Packages only the target image has."
    )
    removed: list[PackageVersion] = Field(
        default_factory=list, description="Packages only the previous image had."
    )
    omitted: int = Field(
        default=0, description="Changed packages not listed (the lists are capped)."
    )
    message: str | None = Field(
        default=None,
        description="Why the difference is unknown (a list could not be read); tried again "
        "when the next wave passes the gate.",
    )


class AntispamStatus(Model):
    """Where the edge's antispam rules are: which rules are live, which are tried."""

    target_hash: str | None = Field(
        default=None, description="A hash of the new rules (the pod template's annotation)."
    )
    files: list[str] = Field(default_factory=list, description="The new rules' file names.")
    live_hash: str | None = Field(
        default=None,
        description="The hash of the rules the antispam Deployment runs (its pod template's "
        "annotation; unset: none applied by a FleetUpgrade).",
    )
    live_config_map: str | None = Field(
        default=None, description="The ConfigMap the antispam pods read their rules from."
    )
    previous_hash: str | None = Field(
        default=None, description="The live rules' hash before promotion (a rollback's)."
    )
    previous_rules: dict[str, str] | None = Field(
        default=None,
        description="The live rules before promotion, restored by a rollback "
        "(set when the new rules are promoted).",
    )


class FleetUpgradeStatus(Model):
    """Where the upgrade is: phase, wave, counts, and what failed."""

    phase: FleetPhase | None = Field(
        default=None,
        description="Pending, Canary, Rolling, Paused, Succeeded, RolledBack or Failed.",
    )
    message: str | None = Field(default=None, description="What is happening, for a person.")
    current_wave: int = Field(default=0, description="The number of the last wave started.")
    wave_started_at: datetime | None = Field(
        default=None, description="When the wave in flight started (its gate's clock)."
    )
    wave: list[WaveMember] = Field(
        default_factory=list, description="The servers of the wave in flight."
    )
    total: int = Field(default=0, description="Servers selected and not claimed by another.")
    upgraded: int = Field(default=0, description="Servers on the image that passed the gate.")
    pending: int = Field(default=0, description="Servers still to move or being checked.")
    failed: int = Field(default=0, description="Servers that failed the health gate.")
    waiting: int = Field(
        default=0,
        description="Pending servers that cannot move yet: a backup or restore runs, or "
        "they are suspended and no wave has passed the gate.",
    )
    failures: list[ServerOutcome] = Field(
        default_factory=list, description="The servers that failed the gate, and how."
    )
    refused: list[ServerOutcome] = Field(
        default_factory=list,
        description="Selected servers left alone: another FleetUpgrade is moving them.",
    )
    deferred: list[ServerOutcome] = Field(
        default_factory=list,
        description="Suspended servers moved without the health gate once the others "
        "passed it; each starts on the image when resumed.",
    )
    packages: PackageChanges | None = Field(
        default=None,
        description="What changed in the Debian packages between the image the servers "
        "left and the target, known once the first wave (the canary) passes the gate.",
    )
    antispam: AntispamStatus | None = Field(
        default=None, description="An antispam upgrade's rules: tried, live, previous."
    )


class FleetUpgrade(Object):
    """A FleetUpgrade as read."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "FleetUpgrade"

    spec: FleetUpgradeSpec
    status: FleetUpgradeStatus = Field(default_factory=FleetUpgradeStatus)
