"""The vpes custom resources: one module per kind, registered here for CRD generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .backup import IMMUTABLE_SPEC, MailBackupSpec, MailBackupStatus
from .common import Model
from .conditions import ConditionType
from .fleet import FLEET_SPEC_VALIDATIONS, FleetUpgradeSpec, FleetUpgradeStatus
from .plan import PLAN_SPEC_VALIDATIONS, MailPlanSpec
from .restore import MailRestoreSpec, MailRestoreStatus
from .server import SERVER_SPEC_VALIDATIONS, PersonalMailServerSpec, PersonalMailServerStatus

CATEGORY = "vpes"


@dataclass(frozen=True)
class Kind:
    """Everything needed to publish one custom resource kind."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    namespaced: bool
    description: str
    spec: type[Model]
    status: type[Model] | None
    spec_validations: list[dict[str, str]] = field(default_factory=list)
    printer_columns: list[dict[str, Any]] = field(default_factory=list)
    spec_required: bool = True


def _ready(priority: int = 0) -> dict[str, Any]:
    return {
        "name": ConditionType.READY.value,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{ConditionType.READY}")].status',
        "priority": priority,
    }


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_MESSAGE = {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1}


KINDS: tuple[Kind, ...] = (
    Kind(
        kind="MailPlan",
        plural="mailplans",
        singular="mailplan",
        short_names=("mplan",),
        namespaced=False,
        description="A plan a provider sells: resources, storage, limits, features and price.",
        spec=MailPlanSpec,
        status=None,
        spec_validations=PLAN_SPEC_VALIDATIONS,
        printer_columns=[
            {"name": "Storage", "type": "string", "jsonPath": ".spec.storage"},
            {"name": "Mailboxes", "type": "integer", "jsonPath": ".spec.maxMailboxes"},
            {"name": "Memory", "type": "string", "jsonPath": ".spec.resources.limits.memory"},
            {"name": "Price", "type": "string", "jsonPath": ".spec.stripePriceId", "priority": 1},
            _AGE,
        ],
    ),
    Kind(
        kind="PersonalMailServer",
        plural="personalmailservers",
        singular="personalmailserver",
        short_names=("pms",),
        namespaced=True,
        description="One customer's own isolated mail server (Postfix + Dovecot).",
        spec=PersonalMailServerSpec,
        status=PersonalMailServerStatus,
        spec_validations=SERVER_SPEC_VALIDATIONS,
        printer_columns=[
            {"name": "Plan", "type": "string", "jsonPath": ".spec.plan"},
            {"name": "Domains", "type": "string", "jsonPath": ".spec.domains"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            _ready(),
            _AGE,
            {
                "name": "Storage",
                "type": "string",
                "jsonPath": f'.status.conditions[?(@.type=="{ConditionType.STORAGE_HEALTHY}")]'
                ".reason",
                "priority": 1,
            },
            {
                "name": "Routing",
                "type": "string",
                "jsonPath": f'.status.conditions[?(@.type=="{ConditionType.DOMAINS_ROUTED}")]'
                ".reason",
                "priority": 1,
            },
            _MESSAGE,
        ],
    ),
    Kind(
        kind="MailBackup",
        plural="mailbackups",
        singular="mailbackup",
        short_names=("mbk",),
        namespaced=True,
        description="One backup of one PersonalMailServer, on demand or by its plan's schedule.",
        spec=MailBackupSpec,
        status=MailBackupStatus,
        spec_validations=IMMUTABLE_SPEC,
        printer_columns=[
            {"name": "Server", "type": "string", "jsonPath": ".spec.server"},
            {"name": "Trigger", "type": "string", "jsonPath": ".spec.trigger"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Snapshot", "type": "string", "jsonPath": ".status.snapshotId"},
            _AGE,
            _MESSAGE,
        ],
    ),
    Kind(
        kind="MailRestore",
        plural="mailrestores",
        singular="mailrestore",
        short_names=("mrs",),
        namespaced=True,
        description="Restore a PersonalMailServer (the same or a new one) from a MailBackup.",
        spec=MailRestoreSpec,
        status=MailRestoreStatus,
        spec_validations=IMMUTABLE_SPEC,
        printer_columns=[
            {"name": "Backup", "type": "string", "jsonPath": ".spec.backup"},
            {"name": "Target", "type": "string", "jsonPath": ".spec.target"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            _AGE,
            _MESSAGE,
        ],
    ),
    Kind(
        kind="FleetUpgrade",
        plural="fleetupgrades",
        singular="fleetupgrade",
        short_names=("fup",),
        namespaced=False,
        description="Move the selected PersonalMailServers to a new tenant image in waves: "
        "a canary, then maxUnavailable at a time, each gated on SMTP and IMAP answering; "
        "a wave that fails the gate is rolled back. Or move the shared edge's Rspamd to new "
        "antispam rules: a canary pod, then the antispam Deployment, each gated on a real "
        "scan; rolled back when the gate fails.",
        spec=FleetUpgradeSpec,
        status=FleetUpgradeStatus,
        spec_validations=FLEET_SPEC_VALIDATIONS,
        printer_columns=[
            {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
            {"name": "Rules", "type": "string", "jsonPath": ".spec.antispam.rulesConfigMap"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Wave", "type": "integer", "jsonPath": ".status.currentWave"},
            {"name": "Upgraded", "type": "integer", "jsonPath": ".status.upgraded"},
            {"name": "Pending", "type": "integer", "jsonPath": ".status.pending"},
            {"name": "Failed", "type": "integer", "jsonPath": ".status.failed"},
            {"name": "Total", "type": "integer", "jsonPath": ".status.total", "priority": 1},
            {"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused", "priority": 1},
            {
                "name": "Packages",
                "type": "string",
                "jsonPath": ".status.packages.summary",
                "priority": 1,
            },
            _AGE,
            _MESSAGE,
        ],
    ),
)

KINDS_BY_NAME = {k.kind: k for k in KINDS}
