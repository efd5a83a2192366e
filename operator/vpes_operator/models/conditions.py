"""The one catalogue of condition types and reasons, and the condition shape.

Like cert-manager's condition constants (`pkg/apis/certmanager/v1/types.go`)
and CloudNativePG's `api/v1`: every condition type and every reason the
operator writes is a constant here, with what it means attached. Status,
events, metrics and the `kubectl get` columns read this module; nothing else
spells a type or a reason as a literal.

- A condition type is good when True (Ready, Provisioned, ...) or good when
  False (Failed, on a MailBackup or MailRestore).
- A reason of a condition that is not good says how it clears: by itself on
  the normal way up or down (PROGRESS: no warning), by itself later (WAITING:
  retried, the phase stays Pending), or only when someone changes something
  (PERMANENT: the default; a condition says what to fix).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Literal

from pydantic import Field

from .common import Model, list_map


class ConditionType(StrEnum):
    READY = "Ready"
    PROVISIONED = "Provisioned"
    DNS_PUBLISHED = "DNSPublished"
    DNS_VERIFIED = "DNSVerified"
    CERTIFICATE_READY = "CertificateReady"
    BACKUP_HEALTHY = "BackupHealthy"
    DELIVERABLE = "Deliverable"
    STORAGE_HEALTHY = "StorageHealthy"
    # True when the shared edge routes every one of spec.domains to this server.
    DOMAINS_ROUTED = "DomainsRouted"
    # MailBackup and MailRestore: which terminal state they reached.
    COMPLETED = "Completed"
    FAILED = "Failed"


# The condition types of a PersonalMailServer, in the order the CRD documents them.
SERVER_TYPES = (
    ConditionType.READY,
    ConditionType.PROVISIONED,
    ConditionType.DNS_PUBLISHED,
    ConditionType.DNS_VERIFIED,
    ConditionType.CERTIFICATE_READY,
    ConditionType.BACKUP_HEALTHY,
    ConditionType.DELIVERABLE,
    ConditionType.STORAGE_HEALTHY,
    ConditionType.DOMAINS_ROUTED,
)
GOOD_WHEN_TRUE: frozenset[str] = frozenset(SERVER_TYPES)


def good_when_true(type_: str) -> bool:
    return type_ in GOOD_WHEN_TRUE


class Permanence(Enum):
    """How a not-good condition with this reason clears up."""

    PROGRESS = "progress"  # on the normal way up (or down, when asked): no warning
    WAITING = "waiting"  # by itself, later: retried with back-off
    PERMANENT = "permanent"  # when someone changes something: a condition says what


class Reason(StrEnum):
    # Provisioned
    APPLIED = "Applied"
    PLAN_NOT_FOUND = "PlanNotFound"
    INVALID_PLAN = "InvalidPlan"
    INVALID_SPEC = "InvalidSpec"
    INVALID_CONFIGURATION = "InvalidConfiguration"
    APPLY_REJECTED = "ApplyRejected"
    API_ERROR = "ApiError"
    PASSWORD_SECRET_MISSING = "PasswordSecretMissing"  # noqa: S105 (a reason, not a secret)
    PASSWORD_INVALID = "PasswordInvalid"  # noqa: S105
    # Ready
    MAIL_SERVER_RUNNING = "MailServerRunning"
    WORKLOAD_MISSING = "WorkloadMissing"
    POD_NOT_READY = "PodNotReady"
    UPDATING = "Updating"
    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    RESTORING = "Restoring"
    IMAGE_UNAVAILABLE = "ImageUnavailable"
    UNSCHEDULABLE = "Unschedulable"
    VOLUME_NOT_BOUND = "VolumeNotBound"
    # DNSPublished and DNSVerified
    PUBLISHED = "Published"
    MANUAL_MODE = "ManualMode"
    WAITING_FOR_KEYS = "WaitingForKeys"
    # spec.mailHost's address records wait for the dedicated LoadBalancer's address.
    WAITING_FOR_ADDRESS = "WaitingForAddress"
    ALL_RECORDS_FOUND = "AllRecordsFound"
    RECORDS_NOT_FOUND = "RecordsNotFound"
    RESOLVER_UNREACHABLE = "ResolverUnreachable"
    OUTBOUND_ADDRESS_LISTED = "OutboundAddressListed"
    UNKNOWN_PROVIDER = "UnknownProvider"
    PROVIDER_NOT_CONFIGURED = "ProviderNotConfigured"
    DNS_SERVER_UNREACHABLE = "DNSServerUnreachable"
    TSIG_KEY_REJECTED = "TSIGKeyRejected"
    ZONE_NOT_SERVED = "ZoneNotServed"
    UPDATE_REFUSED = "UpdateRefused"
    RECORD_CONFLICT = "RecordConflict"
    CONCURRENT_CHANGE = "ConcurrentChange"
    DNS_ERROR = "DNSError"
    # CertificateReady (the operator's own ACME client, certs/)
    RATE_LIMITED = "RateLimited"
    CHALLENGE_FAILED = "ChallengeFailed"
    CAA_FORBIDS = "CAAForbids"
    CA_UNREACHABLE = "CAUnreachable"
    CA_REFUSED = "CARefused"
    ACME_NOT_CONFIGURED = "ACMENotConfigured"
    # CertificateReady (cert-manager's Certificates, webcerts.py). When False for a
    # failed issuance, the reason is cert-manager's own (e.g. Failed) when it is a
    # CamelCase word, CERTIFICATE_FAILED otherwise; the message is cert-manager's.
    CERTIFICATE_ISSUED = "CertificateIssued"
    CERTIFICATE_ISSUING = "Issuing"
    CERTIFICATE_FAILED = "CertificateFailed"
    CERTIFICATES_NOT_CONFIGURED = "CertificatesNotConfigured"
    CERT_MANAGER_NOT_INSTALLED = "CertManagerNotInstalled"
    NO_DOMAINS_ROUTED = "NoDomainsRouted"
    # spec.mailHost (mailhost.py): clients reach the server itself, so only a plan with a
    # dedicated address serves it, and only DNS-01 can prove it (the tenant serves no HTTP).
    MAIL_HOST_NEEDS_DEDICATED_ADDRESS = "MailHostNeedsDedicatedAddress"
    MAIL_HOST_NEEDS_DNS01 = "MailHostNeedsDNS01"
    # BackupHealthy
    BACKUPS_OFF = "BackupsOff"
    INVALID_SCHEDULE = "InvalidSchedule"
    NO_BACKUP_DUE_YET = "NoBackupDueYet"
    BACKUP_CURRENT = "BackupCurrent"
    BACKUP_MISSED = "BackupMissed"
    # MailBackup and MailRestore (the Completed and Failed conditions)
    SNAPSHOT_TAKEN = "SnapshotTaken"
    COMPLETED = "Completed"
    RESTORED = "Restored"
    SERVER_NOT_FOUND = "ServerNotFound"
    BACKUP_NOT_FOUND = "BackupNotFound"
    BACKUP_NOT_USABLE = "BackupNotUsable"
    BACKUP_INVALID = "BackupInvalid"
    BACKUP_NOT_READY = "BackupNotReady"
    RESTORE_IN_PROGRESS = "RestoreInProgress"
    RESTIC_FAILED = "ResticFailed"
    RESTIC_MISSING = "ResticMissing"
    SNAPSHOT_NOT_FOUND = "SnapshotNotFound"
    SERVER_INVALID = "ServerInvalid"
    SERVER_CREATED = "ServerCreated"
    TARGET_TOO_SMALL = "TargetTooSmall"
    STARTED = "Started"
    JOB_MISSING = "JobMissing"
    JOB_FAILED = "JobFailed"
    NO_RESULT = "NoResult"
    BACKUPS_NOT_CONFIGURED = "BackupsNotConfigured"
    BACKUP_KEY_MISSING = "BackupKeyMissing"
    S3_CREDENTIALS_MISSING = "S3CredentialsMissing"
    S3_CREDENTIALS_REJECTED = "S3CredentialsRejected"
    BUCKET_NOT_FOUND = "BucketNotFound"
    S3_ERROR = "S3Error"
    S3_UNREACHABLE = "S3Unreachable"
    # The provider's S3 cannot give a job credentials of its own repository only.
    S3_IDENTITY_UNAVAILABLE = "S3IdentityUnavailable"
    S3_IDENTITY_PENDING = "S3IdentityPending"
    BUCKET_NAME_TOO_LONG = "BucketNameTooLong"
    S3_ENDPOINT_UNRESOLVABLE = "S3EndpointUnresolvable"
    S3_EGRESS_CIDRS_REQUIRED = "S3EgressCIDRsRequired"
    # StorageHealthy (independent of Ready: a full volume defers mail, it does not stop
    # the server)
    STORAGE_AVAILABLE = "StorageAvailable"
    VOLUME_NEARLY_FULL = "VolumeNearlyFull"
    VOLUME_FULL = "VolumeFull"
    QUOTAS_OVERCOMMITTED = "QuotasOvercommitted"
    USAGE_UNKNOWN = "UsageUnknown"
    # DomainsRouted (written by the edge's maps, independent of Ready: a server that
    # lost a domain still serves its others)
    ROUTED = "Routed"
    DOMAIN_TAKEN = "DomainTaken"
    # Deliverable (written from the edge relay's counts; independent of Ready: a held
    # server still receives, its outbound mail waits in its queue)
    RELAYING = "Relaying"
    OUTBOUND_LIMIT_REACHED = "OutboundLimitReached"
    OUTBOUND_SPAM_SUSPECTED = "OutboundSpamSuspected"
    # Limits of the plan
    PLAN_LIMIT_EXCEEDED = "PlanLimitExceeded"
    INVALID_MAILBOXES = "InvalidMailboxes"
    # Events only
    DNS_CLEANUP_FAILED = "DNSCleanupFailed"
    # On the edge's maps ConfigMap: they could not be built (the last ones stay).
    EDGE_MAPS_FAILED = "EdgeMapsFailed"
    # On a server: the admin released its outbound hold (vpes.io/release-outbound).
    OUTBOUND_RELEASED = "OutboundReleased"
    # On the edge's maps ConfigMap: the relay's /status does not answer (holds stay).
    RELAY_STATUS_UNKNOWN = "RelayStatusUnknown"
    RELAY_STATUS_BACK = "RelayStatusBack"


# Reasons that are not PERMANENT (the default for every other reason).
_PERMANENCE: dict[str, Permanence] = {
    Reason.WORKLOAD_MISSING: Permanence.PROGRESS,
    Reason.POD_NOT_READY: Permanence.PROGRESS,
    Reason.UPDATING: Permanence.PROGRESS,
    Reason.SUSPENDING: Permanence.PROGRESS,
    Reason.SUSPENDED: Permanence.PROGRESS,
    Reason.RESTORING: Permanence.PROGRESS,
    Reason.USAGE_UNKNOWN: Permanence.PROGRESS,
    Reason.PASSWORD_SECRET_MISSING: Permanence.WAITING,
    Reason.PASSWORD_INVALID: Permanence.WAITING,
    Reason.API_ERROR: Permanence.WAITING,
    Reason.BACKUP_NOT_READY: Permanence.WAITING,
    Reason.RESTORE_IN_PROGRESS: Permanence.WAITING,
    Reason.RESTIC_FAILED: Permanence.WAITING,
    Reason.S3_ERROR: Permanence.WAITING,
    Reason.S3_UNREACHABLE: Permanence.WAITING,
    Reason.S3_IDENTITY_PENDING: Permanence.WAITING,
    Reason.RATE_LIMITED: Permanence.WAITING,
    Reason.CA_UNREACHABLE: Permanence.WAITING,
    Reason.CERTIFICATE_ISSUING: Permanence.PROGRESS,
    Reason.WAITING_FOR_ADDRESS: Permanence.WAITING,
}
# Ready reasons that say what keeps the pod from running (see podstate).
POD_BLOCKED: frozenset[str] = frozenset(
    {Reason.IMAGE_UNAVAILABLE, Reason.UNSCHEDULABLE, Reason.VOLUME_NOT_BOUND}
)
# Reasons asked for, not suffered: never a warning, even when a good condition turns bad.
# Certificates the provider did not configure are a choice, not a fault.
REQUESTED: frozenset[str] = frozenset({Reason.SUSPENDED, Reason.CERTIFICATES_NOT_CONFIGURED})


def permanence(reason: str) -> Permanence:
    return _PERMANENCE.get(reason, Permanence.PERMANENT)


class Condition(Model):
    """The standard Kubernetes condition shape (metav1.Condition)."""

    type: str = Field(
        description="Type of the condition, in CamelCase, e.g. Ready.",
        max_length=316,
        pattern=r"^[A-Z][A-Za-z0-9]*$",
    )
    status: Literal["True", "False", "Unknown"] = Field(
        description="Status of the condition: True, False or Unknown."
    )
    reason: str = Field(
        description="A CamelCase constant saying why the condition is in this state.",
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field(
        default="",
        description="What happened and, when something is wrong, what to do about it.",
        max_length=32768,
    )
    last_transition_time: datetime = Field(
        description="When the status last changed (not when it was last checked)."
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The .metadata.generation the condition was computed from.",
    )

    @property
    def good(self) -> bool:
        return (self.status == "True") == good_when_true(self.type)


def conditions_field(description: str) -> Any:
    """A status's `conditions`: a list-map keyed by type, as Kubernetes merges them."""
    return Field(
        default_factory=list,
        description=description,
        json_schema_extra=list_map("type"),
    )
