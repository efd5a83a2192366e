"""MailPlan: what a plan sells and what it costs to run (cluster-scoped)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import Field

from .. import API_VERSION
from .common import ByteSize, ComputeResources, Model, Object, x_validation

# A MailPlan's spec as stored (JSON), where an invalid plan must be reported rather than
# raised: `reconcile.parse_plan` validates it into a MailPlanSpec.
PlanJSON = dict[str, Any]


class AntispamLevel(StrEnum):
    OFF = "Off"
    STANDARD = "Standard"
    STRICT = "Strict"


class Retention(Model):
    """How many backups of each age to keep (restic forget --keep-*)."""

    daily: int = Field(default=7, ge=0, le=366, description="Daily snapshots to keep.")
    weekly: int = Field(default=4, ge=0, le=520, description="Weekly snapshots to keep.")
    monthly: int = Field(default=6, ge=0, le=1200, description="Monthly snapshots to keep.")


class BackupPolicy(Model):
    schedule: str = Field(
        default="17 3 * * *",
        description="When scheduled backups run, in cron syntax (five fields, UTC).",
        max_length=100,
        pattern=r"^(\S+\s+){4}\S+$",
    )
    retention: Retention = Field(default_factory=Retention, description="What to keep.")
    enabled: bool = Field(default=True, description="Whether scheduled backups run at all.")


class Features(Model):
    webmail: bool = Field(default=True, description="Webmail (Roundcube) for the customer.")
    calendar: bool = Field(default=False, description="Calendar and contacts (CalDAV/CardDAV).")
    antispam: AntispamLevel = Field(
        default=AntispamLevel.STANDARD,
        description=(
            "Inbound spam filtering at the shared edge (Rspamd) and what the server does "
            "with it. Off: not scanned (GTUBE is still refused), nothing filed or learned. "
            "Standard: an X-Spam header at score 6, which files the message into the "
            "user's Junk before the user's own Sieve script runs; refused at 15; moving "
            "mail into or out of Junk over IMAP trains that user's Bayes (where the "
            "platform enables training). Strict: the same with the header at 4 and "
            "refusal at 10."
        ),
    )
    dedicated_address: bool = Field(
        default=False,
        description="Give each server of this plan its own LoadBalancer address.",
    )


class MailPlanSpec(Model):
    """What a plan sells (limits a customer sees) and costs (resources a node pays)."""

    display_name: str | None = Field(
        default=None, max_length=100, description="Name shown to customers, e.g. 'Personal'."
    )
    resources: ComputeResources = Field(
        default_factory=ComputeResources,
        description="CPU and memory requests and limits of each tenant pod on this plan.",
    )
    storage: ByteSize = Field(
        default="1Gi",
        description="Size of each tenant's volume (mail and indexes), e.g. 5Gi.",
    )
    storage_class_name: str | None = Field(
        default=None,
        max_length=253,
        description="StorageClass of tenant volumes; the cluster default when unset.",
    )
    max_domains: int = Field(default=3, ge=1, le=100, description="Domains per server.")
    max_mailboxes: int = Field(default=10, ge=1, le=1000, description="Mailboxes per server.")
    default_quota: ByteSize = Field(
        default="512Mi",
        description="Quota of a mailbox that does not set its own.",
    )
    max_message_size: ByteSize = Field(
        default="25Mi",
        description="Largest message accepted or sent, e.g. 25Mi.",
    )
    outbound_per_hour: int = Field(
        default=200,
        ge=0,
        le=1_000_000,
        description="Recipients a server may send to per hour through the edge relay (a "
        "message to 3 people counts 3; 0: it may not send).",
    )
    backup: BackupPolicy = Field(default_factory=BackupPolicy, description="Backup schedule.")
    features: Features = Field(default_factory=Features, description="What the plan includes.")
    stripe_price_id: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^price_[A-Za-z0-9]+$",
        description="The Stripe Price a customer pays for this plan (price_...).",
    )


def _not_below(field: str) -> str:
    """CEL: limits.<field> >= requests.<field> whenever both are given."""
    return (
        f"!has(self.resources) || !has(self.resources.limits) || "
        f"!has(self.resources.requests) || !has(self.resources.limits.{field}) || "
        f"!has(self.resources.requests.{field}) || "
        f"quantity(self.resources.limits.{field}).compareTo("
        f"quantity(self.resources.requests.{field})) >= 0"
    )


PLAN_SPEC_VALIDATIONS = [
    x_validation(
        _not_below("memory"), "resources.limits.memory must be at least resources.requests.memory"
    ),
    x_validation(_not_below("cpu"), "resources.limits.cpu must be at least resources.requests.cpu"),
]


class MailPlan(Object):
    """A MailPlan as read, its spec validated (an invalid one raises pydantic's error)."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "MailPlan"

    spec: MailPlanSpec = Field(default_factory=MailPlanSpec)
