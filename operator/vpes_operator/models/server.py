"""PersonalMailServer (pms): one customer's own mail server (namespaced)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, StringConstraints

from .. import API_VERSION
from .common import (
    ADDRESS_PATTERN,
    ALIAS_PATTERN,
    DOMAIN_PATTERN,
    MAILBOX_ADDRESS_PATTERN,
    NAME_PATTERN,
    ByteSize,
    Model,
    Object,
    SecretKeyRef,
    friendly,
    list_map,
    x_validation,
)
from .conditions import SERVER_TYPES, Condition, conditions_field

MAX_DOMAINS = 100
MAX_MAILBOXES = 1000
MAX_ALIASES = 50
MAX_FORWARDS = 200
MAX_FORWARD_TARGETS = 10
# The API server checks each catch-all's target against every mailbox (CEL):
# with 100 catch-alls that rule would exceed its cost budget.
MAX_CATCH_ALLS = 50
MAX_PANEL_ADMINS = 20
# Vacation replies: all of a server's go into one Sieve script in the tenant
# ConfigMap (at most 1 MiB with everything else): at most this many are on at once.
MAX_VACATIONS = 50
MAX_VACATION_SUBJECT = 200
MAX_VACATION_MESSAGE = 4000
MAX_VACATION_DAYS = 30
# No line break in a subject (RE2, as the API server matches it).
ONE_LINE_PATTERN = r"^[^\r\n]*$"
# OpenPGP public keys published in the Web Key Directory: one armored key a mailbox, at
# most this long, on at most this many mailboxes of a server (50 keys of 8 KiB keep the
# object well under the API server's 1.5 MiB).
MAX_OPENPGP_KEY = 8192
MAX_OPENPGP_KEYS = 50
OPENPGP_HEADER = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
OPENPGP_FOOTER = "-----END PGP PUBLIC KEY BLOCK-----"
OPENPGP_KEY_MESSAGE = (
    f"must be one ASCII-armored OpenPGP public key, from the line {OPENPGP_HEADER} to the "
    f"line {OPENPGP_FOOTER} (what gpg --armor --export <address> prints); never a private key"
)
OPENPGP_PRIVATE_BLOCK_MESSAGE = (
    "this is a private (secret) key: never publish it. Publish the public key only: "
    "gpg --armor --export <address>"
)
# From the armor's first line to its last. Said with startsWith/endsWith, not a pattern:
# a regular expression over 8 KiB in each of 1,000 mailboxes exceeds the API server's
# cost budget for CEL, and a plain schema pattern would quote the value (a private key
# pasted by mistake) in its error.
_LINE_ENDS = ("\\n", "\\r\\n")
OPENPGP_KEY_RULE = (
    "("
    + " || ".join(f"self.startsWith('{OPENPGP_HEADER}{e}')" for e in _LINE_ENDS)
    + ") && ("
    + " || ".join(f"self.endsWith('{OPENPGP_FOOTER}{e}')" for e in ("", *_LINE_ENDS))
    + ")"
)


def _armored_public_key(value: str) -> str:
    """What OPENPGP_KEY_RULE and the rule against a private key say, for pydantic."""
    starts = tuple(OPENPGP_HEADER + e for e in ("\n", "\r\n"))
    ends = tuple(OPENPGP_FOOTER + e for e in ("", "\n", "\r\n"))
    if not value.startswith(starts) or not value.endswith(ends):
        raise ValueError(OPENPGP_KEY_MESSAGE)
    if "PRIVATE KEY" in value:
        raise ValueError(OPENPGP_PRIVATE_BLOCK_MESSAGE)
    return value


DOMAIN_MESSAGE = (
    "must be a lowercase domain name such as example.org (IDNA-encode international names: xn--...)"
)
MAILBOX_MESSAGE = (
    "must be a mailbox address such as alice@example.org: lowercase letters, digits, '.', "
    "'_' and '-' before the @ ('+' is for plus-addressing)"
)
ADDRESS_MESSAGE = (
    "must be a lowercase mail address such as alice@example.org (no quotes, '%', '!' or "
    "IP literals)"
)
Domain = Annotated[
    str,
    StringConstraints(pattern=DOMAIN_PATTERN, max_length=253),
    Field(json_schema_extra=friendly(DOMAIN_MESSAGE)),
]
MailboxAddress = Annotated[
    str,
    StringConstraints(pattern=MAILBOX_ADDRESS_PATTERN, max_length=254),
    Field(json_schema_extra=friendly(MAILBOX_MESSAGE)),
]
Address = Annotated[
    str,
    StringConstraints(pattern=ADDRESS_PATTERN, max_length=254),
    Field(json_schema_extra=friendly(ADDRESS_MESSAGE)),
]
# Alias and forward-target items keep a plain pattern: a CEL rule on every
# item of every mailbox would exceed the API server's validation cost budget.
Alias = Annotated[str, StringConstraints(pattern=ALIAS_PATTERN, max_length=254)]
ExternalAddress = Annotated[str, StringConstraints(pattern=ADDRESS_PATTERN, max_length=254)]


class DNSMode(StrEnum):
    MANAGED = "Managed"
    MANUAL = "Manual"


ArmoredPublicKey = Annotated[
    str,
    StringConstraints(max_length=MAX_OPENPGP_KEY),
    AfterValidator(_armored_public_key),
]


class Owner(Model):
    """Who the server belongs to: where the provider reaches the customer."""

    email: Address = Field(
        description="The customer's contact address (outside this server).",
    )
    name: str | None = Field(default=None, max_length=200, description="The customer's name.")


class Vacation(Model):
    """An automatic reply ("out of office") to mail the mailbox receives.

    Sent at most once every `days` days to each sender, only for mail addressed
    to the mailbox or one of its aliases (To, Cc or Bcc), never to mail the
    edge called spam, nor to lists, bulk or automatic mail."""

    enabled: bool = Field(default=False, description="Replies are sent.")
    subject: str = Field(
        min_length=1,
        max_length=MAX_VACATION_SUBJECT,
        pattern=ONE_LINE_PATTERN,
        description="The replies' subject, one line.",
        json_schema_extra=friendly("the subject must be one line (no line breaks)"),
    )
    message: str = Field(
        min_length=1,
        max_length=MAX_VACATION_MESSAGE,
        description="The replies' text (plain text).",
    )
    days: int = Field(
        default=7,
        ge=1,
        le=MAX_VACATION_DAYS,
        description=f"How often one sender gets a reply: at most once in this many days "
        f"(1 to {MAX_VACATION_DAYS}).",
    )
    until: date | None = Field(
        default=None,
        description="The last day replies are sent (UTC), e.g. 2025-08-31; after it none "
        "are, without any change to the spec. No end when unset.",
    )


class Mailbox(Model):
    """A mailbox a person logs in to over IMAP/POP3/SMTP submission."""

    address: MailboxAddress = Field(
        description="The address and login, e.g. alice@example.org. Its domain must be "
        "one of spec.domains.",
    )
    quota: ByteSize | None = Field(
        default=None,
        description="Storage quota, e.g. 2Gi, from 1Mi to 16Ti; the plan's defaultQuota "
        "when unset.",
        json_schema_extra={
            "x-kubernetes-validations": [
                x_validation(
                    "quantity(self).compareTo(quantity('1Mi')) >= 0 && "
                    "quantity(self).compareTo(quantity('16Ti')) <= 0",
                    "quota must be between 1Mi and 16Ti",
                )
            ]
        },
    )
    aliases: list[Alias] = Field(
        default_factory=list,
        max_length=MAX_ALIASES,
        description="Other addresses delivered to this mailbox. A bare local part "
        "(e.g. 'info') means that name in every domain of the server.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    password_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="The Secret key holding this mailbox's password. When unset, the "
        "operator generates one and shows it once in the Secret <server>-initial-passwords.",
    )
    display_name: str | None = Field(default=None, max_length=200, description="Shown name.")
    vacation: Vacation | None = Field(
        default=None,
        description="An automatic reply to incoming mail (out of office), which the "
        "mailbox's user sets in the panel.",
    )
    openpgp_key: ArmoredPublicKey | None = Field(
        default=None,
        description="The mailbox user's OpenPGP public key (ASCII-armored, one key with a "
        "user ID of this address), published in the Web Key Directory so that mail apps "
        "(gpg --locate-keys) find it; the user publishes it in the panel.",
        json_schema_extra={
            "x-kubernetes-validations": [
                x_validation(OPENPGP_KEY_RULE, OPENPGP_KEY_MESSAGE),
                x_validation("!self.contains('PRIVATE KEY')", OPENPGP_PRIVATE_BLOCK_MESSAGE),
            ],
        },
    )


class Forward(Model):
    """Mail to an address of the server sent on to other addresses."""

    from_: Address = Field(
        alias="from",
        description="The address to forward; its domain must be one of spec.domains.",
    )
    to: list[ExternalAddress] = Field(
        min_length=1,
        max_length=MAX_FORWARD_TARGETS,
        description="Where the mail goes.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class CatchAll(Model):
    """Mail to any unknown address of one domain delivered to one mailbox."""

    domain: Domain = Field(
        description="The domain whose unknown addresses are caught; one of spec.domains.",
    )
    to: MailboxAddress = Field(
        description="The mailbox that receives them: one of spec.mailboxes[].address (it "
        "may be in another domain of the server). Existing mailboxes, aliases and forwards "
        "of the domain keep their own mail.",
    )


class DNSSettings(Model):
    mode: DNSMode = Field(
        default=DNSMode.MANAGED,
        description="Managed: the provider's DNS publishes the records. Manual: the customer "
        "publishes them; status.dnsRecords says exactly what.",
    )
    provider: str | None = Field(
        default=None,
        max_length=63,
        pattern=NAME_PATTERN,
        description="Which configured DNS provider publishes the records; the default when unset.",
    )


class PanelAccess(Model):
    """Who manages the server in the customer panel, and how everyone logs in there."""

    admins: list[MailboxAddress] = Field(
        default_factory=list,
        max_length=MAX_PANEL_ADMINS,
        description="Mailboxes whose users manage the whole server in the panel (domains, "
        "mailboxes, backups, plan); each one of spec.mailboxes[].address. Every other "
        "mailbox user manages only their own mailbox there.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    require_totp: bool = Field(
        default=False,
        alias="requireTOTP",
        description="Every mailbox user must set up a second factor (a TOTP app) before "
        "the panel lets them do anything else.",
    )


class PersonalMailServerSpec(Model):
    """The desired state of one customer's mail server."""

    plan: str = Field(
        max_length=63,
        pattern=NAME_PATTERN,
        description="Name of the MailPlan this server is sold on.",
        json_schema_extra=friendly("must be the name of a MailPlan (lowercase, digits, '-')"),
    )
    owner: Owner = Field(description="The customer.")
    domains: list[Domain] = Field(
        min_length=1,
        max_length=MAX_DOMAINS,
        description="Mail domains this server receives mail for, IDNA-encoded, lowercase "
        "(e.g. example.org, xn--bcher-kva.example).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    mailboxes: list[Mailbox] = Field(
        default_factory=list,
        max_length=MAX_MAILBOXES,
        description="The mailboxes; each address appears once.",
        json_schema_extra=list_map("address"),
    )
    forwards: list[Forward] = Field(
        default_factory=list,
        max_length=MAX_FORWARDS,
        description="Addresses whose mail is forwarded elsewhere. The address of a "
        "mailbox forwards that mailbox's mail; a copy stays in it when the mailbox is one "
        "of the targets.",
        json_schema_extra=list_map("from"),
    )
    catch_all: list[CatchAll] = Field(
        default_factory=list,
        max_length=MAX_CATCH_ALLS,
        description="Catch-all domains: mail to an address of the domain that is no "
        "mailbox, alias or forward goes to a mailbox instead of being refused. Off by "
        "default: unknown recipients are refused at RCPT time.",
        json_schema_extra=list_map("domain"),
    )
    dns: DNSSettings = Field(default_factory=DNSSettings, description="How DNS is published.")
    suspended: bool = Field(
        default=False,
        description="Stop the server (scale to zero) keeping all its mail and settings.",
    )
    panel: PanelAccess = Field(
        default_factory=PanelAccess, description="Access to the customer panel."
    )


def _domain_of(var: str) -> str:
    return f"{var}.substring({var}.indexOf('@') + 1)"


SERVER_SPEC_VALIDATIONS = [
    x_validation(
        f"!has(self.mailboxes) || self.mailboxes.all(m, {_domain_of('m.address')} in self.domains)",
        "every mailbox address must belong to one of spec.domains; add its domain to "
        "spec.domains or fix the address",
        field_path=".mailboxes",
    ),
    x_validation(
        f"!has(self.forwards) || self.forwards.all(f, {_domain_of('f.from')} in self.domains)",
        "every forward's 'from' address must belong to one of spec.domains",
        field_path=".forwards",
    ),
    x_validation(
        "!has(self.catchAll) || self.catchAll.all(c, c.domain in self.domains)",
        "every catch-all's domain must be one of spec.domains",
        field_path=".catchAll",
    ),
    x_validation(
        "!has(self.catchAll) || self.catchAll.all(c, has(self.mailboxes) && "
        "self.mailboxes.exists(m, m.address == c.to))",
        "every catch-all's 'to' must be a mailbox of this server (one of "
        "spec.mailboxes[].address); add the mailbox or pick one that exists",
        field_path=".catchAll",
    ),
    x_validation(
        "!has(self.panel) || !has(self.panel.admins) || self.panel.admins.all(a, "
        "has(self.mailboxes) && self.mailboxes.exists(m, m.address == a))",
        "every panel administrator must be a mailbox of this server (one of "
        "spec.mailboxes[].address); add the mailbox or remove it from panel.admins",
        field_path=".panel.admins",
    ),
    x_validation(
        "!has(self.mailboxes) || self.mailboxes.filter(m, has(m.vacation) && "
        f"m.vacation.enabled).size() <= {MAX_VACATIONS}",
        f"at most {MAX_VACATIONS} mailboxes may have their vacation reply on at once; turn "
        "one off first",
        field_path=".mailboxes",
    ),
    x_validation(
        "!has(self.mailboxes) || self.mailboxes.filter(m, has(m.openpgpKey)).size() <= "
        f"{MAX_OPENPGP_KEYS}",
        f"at most {MAX_OPENPGP_KEYS} mailboxes of a server may publish an OpenPGP key; "
        "withdraw one first",
        field_path=".mailboxes",
    ),
]


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


class PersonalMailServer(Object):
    """A PersonalMailServer as read: metadata and status typed. The spec stays as stored
    (JSON): `parsed_spec` validates it where an invalid one is reported (Provisioned says
    why), and a snapshot keeps it whole."""

    API_VERSION: ClassVar[str] = API_VERSION
    KIND: ClassVar[str] = "PersonalMailServer"

    spec: dict[str, Any] = Field(default_factory=dict)
    status: PersonalMailServerStatus = Field(default_factory=PersonalMailServerStatus)

    @property
    def plan(self) -> str:
        return str(self.spec.get("plan", ""))

    @property
    def generation(self) -> int:
        return 1 if self.metadata.generation is None else self.metadata.generation

    @property
    def suspended(self) -> bool:
        return bool(self.spec.get("suspended"))

    def parsed_spec(self) -> PersonalMailServerSpec:
        """The spec, validated (pydantic's ValidationError when it is not valid)."""
        return PersonalMailServerSpec.model_validate(self.spec)
