"""PersonalMailServer's status: what the operator observed (phase, conditions,
endpoints, DNS records, usage, outbound mail, the last backup)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from .common import Model, list_map
from .conditions import SERVER_TYPES, Condition, conditions_field
from .server_limits import MAX_MAILBOXES


class Phase(StrEnum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    READY = "Ready"
    SUSPENDED = "Suspended"
    RESTORING = "Restoring"
    FAILED = "Failed"


class Endpoints(Model):
    imap_host: str | None = Field(default=None, description="IMAP host (port 993, TLS).")
    smtp_host: str | None = Field(default=None, description="Submission host (465/587).")
    service: str | None = Field(
        default=None, description="The in-cluster Service of this server (host name)."
    )
    webmail_url: str | None = Field(default=None, description="Webmail address.")
    panel_url: str | None = Field(default=None, description="The customer panel.")


class DNSRecord(Model):
    domain: str = Field(description="The customer domain this record serves.")
    type: str = Field(description="Record type: MX, TXT, CNAME, SRV, TLSA.")
    name: str = Field(description="Owner name, fully qualified, without the trailing dot.")
    value: str = Field(description="Record data exactly as it must be published.")
    ttl: int = Field(description="Time to live in seconds.")
    purpose: str | None = Field(default=None, description="What the record is for.")
    check: str | None = Field(
        default=None,
        description="The last live check: Pass, Fail or Unknown (not checked yet or no answer).",
    )
    found: list[str] | None = Field(
        default=None, description="What the resolvers answered for this name and type."
    )
    fix: str | None = Field(default=None, description="What to do when the check failed.")


class MailboxUsage(Model):
    """One mailbox's storage: Dovecot's quota accounting, measured in the pod."""

    address: str = Field(description="The mailbox (one of spec.mailboxes[].address).")
    quota_bytes: int = Field(ge=0, description="Its quota in bytes.")
    used_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Bytes its mail takes, as Dovecot counts them for the quota (unset "
        "until Dovecot has counted: before its first mail).",
    )
    messages: int | None = Field(default=None, ge=0, description="Messages it holds.")


class Usage(Model):
    """What the server uses. The storage figures are measured in the pod every
    few minutes (measuredAt says when); the rest comes from the spec."""

    mailboxes: int = Field(default=0, description="Mailboxes configured.")
    domains: int = Field(default=0, description="Domains configured.")
    storage_requested: str | None = Field(default=None, description="Volume size.")
    quota_committed_bytes: int | None = Field(
        default=None,
        ge=0,
        description="The mailboxes' quotas added up. More than the volume is allowed "
        "(StorageHealthy says so): they cannot all fill up at once.",
    )
    storage_capacity_bytes: int | None = Field(
        default=None, ge=0, description="Size of the mail volume's file system, measured."
    )
    storage_used_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Bytes used on the mail volume (mail, indexes and Postfix's queue), measured.",
    )
    storage_available_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Bytes Postfix and Dovecot can still write, measured. Under the "
        "reserve (StorageHealthy's message gives it) new mail is deferred.",
    )
    measured_at: datetime | None = Field(
        default=None, description="When the storage figures were measured."
    )
    mailbox_usage: list[MailboxUsage] = Field(
        default_factory=list,
        max_length=MAX_MAILBOXES,
        description="Each mailbox's quota and use.",
        json_schema_extra=list_map("address"),
    )


class HoldCause(StrEnum):
    """Why the relay holds a server's outbound mail."""

    LIMIT = "Limit"  # the plan's recipients an hour are used up
    SPAM = "Spam"  # the relay's antispam refused too many of its messages in an hour


class Outbound(Model):
    """Outbound mail through the edge's relay, and whether the server is held there.

    The figures are those the relay reported when the operator last acted
    (held or released the server); the live ones are the metrics
    vpes_tenant_outbound_recipients, vpes_tenant_outbound_spam and
    vpes_tenant_outbound_held."""

    recipients: int | None = Field(
        default=None, ge=0, description="Recipients sent in the last hour (the relay's count)."
    )
    limit: int | None = Field(
        default=None, ge=0, description="Recipients an hour the plan allows (outboundPerHour)."
    )
    spam: int | None = Field(
        default=None,
        ge=0,
        description="Messages the relay's antispam refused in the last hour (the relay's count).",
    )
    held: bool = Field(
        default=False,
        description="The relay defers every message of this server (450) until released.",
    )
    held_for: HoldCause | None = Field(
        default=None,
        description="Why it is held: Limit (the plan's recipients an hour) or Spam (the "
        "relay's antispam refused too many of its messages in an hour).",
    )
    held_since: datetime | None = Field(default=None, description="When the hold began.")
    reason: str | None = Field(default=None, description="Why the server is held.")
    released_token: str | None = Field(
        default=None,
        description="The last vpes.io/release-outbound annotation the operator acted on.",
    )


class BackupRef(Model):
    name: str = Field(description="The MailBackup.")
    completed_at: datetime | None = Field(default=None, description="When it completed.")
    snapshot_id: str | None = Field(default=None, description="restic snapshot id.")


class PersonalMailServerStatus(Model):
    """The observed state of the server: phase, conditions, endpoints, DNS, usage."""

    phase: Phase | None = Field(default=None, description="Where the server is in its life.")
    message: str | None = Field(default=None, description="A one-line summary for a person.")
    observed_generation: int | None = Field(
        default=None, description="The spec generation the status describes."
    )
    conditions: list[Condition] = conditions_field(", ".join(SERVER_TYPES) + ".")
    endpoints: Endpoints | None = Field(default=None, description="How to reach the server.")
    dns_records: list[DNSRecord] = Field(
        default_factory=list, description="Every DNS record the domains need, exactly."
    )
    usage: Usage | None = Field(default=None, description="What the server uses.")
    outbound: Outbound | None = Field(
        default=None, description="Outbound mail through the edge's relay: the hourly limit."
    )
    last_backup: BackupRef | None = Field(default=None, description="Last good backup.")
