"""PersonalMailServer (pms): one customer's own mail server (namespaced)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, StringConstraints, model_validator

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
from .openpgp_key import (
    MAX_OPENPGP_KEY,
    MAX_OPENPGP_KEYS,
    OPENPGP_FOOTER,
    OPENPGP_HEADER,
    OPENPGP_KEY_MESSAGE,
    OPENPGP_KEY_RULE,
    OPENPGP_PRIVATE_BLOCK_MESSAGE,
    armored_public_key,
)
from .server_limits import (
    MAX_ALIASES,
    MAX_CATCH_ALLS,
    MAX_DOMAINS,
    MAX_FORWARD_TARGETS,
    MAX_FORWARDS,
    MAX_MAILBOXES,
    MAX_PANEL_ADMINS,
    MAX_VACATION_DAYS,
    MAX_VACATION_MESSAGE,
    MAX_VACATION_SUBJECT,
    MAX_VACATIONS,
)
from .server_status import (
    BackupRef,
    DNSRecord,
    Endpoints,
    HoldCause,
    MailboxUsage,
    Outbound,
    PersonalMailServerStatus,
    Phase,
    Usage,
)

# The limits, the status and the key format live in their own modules; importers of
# this one keep finding them here.
# fmt: off
__all__ = [
    "ADDRESS_MESSAGE", "DOMAIN_MESSAGE", "MAILBOX_MESSAGE", "MAX_ALIASES", "MAX_CATCH_ALLS",
    "MAX_DOMAINS", "MAX_FORWARDS", "MAX_FORWARD_TARGETS", "MAX_MAILBOXES",
    "MAX_OPENPGP_KEY", "MAX_OPENPGP_KEYS", "MAX_PANEL_ADMINS", "MAX_VACATIONS",
    "MAX_VACATION_DAYS", "MAX_VACATION_MESSAGE", "MAX_VACATION_SUBJECT", "ONE_LINE_PATTERN",
    "OPENPGP_FOOTER", "OPENPGP_HEADER", "OPENPGP_KEY_MESSAGE", "OPENPGP_KEY_RULE",
    "OPENPGP_PRIVATE_BLOCK_MESSAGE", "SERVER_SPEC_VALIDATIONS", "Address", "Alias",
    "ArmoredPublicKey", "BackupRef", "CatchAll", "DNSMode", "DNSRecord", "DNSSettings",
    "Domain", "Endpoints", "ExternalAddress", "Forward", "HoldCause", "Mailbox",
    "MailboxAddress", "MailboxUsage", "Outbound", "Owner", "PanelAccess",
    "PersonalMailServer", "PersonalMailServerSpec", "PersonalMailServerStatus", "Phase",
    "Usage", "Vacation",
]
# fmt: on

# No line break in a subject (RE2, as the API server matches it).
ONE_LINE_PATTERN = r"^[^\r\n]*$"
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
    AfterValidator(armored_public_key),
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
    mail_host: Domain | None = Field(
        default=None,
        description="The server's own mail host name, e.g. mail.example.org: one of "
        "spec.domains or a name under one. Mail clients then connect to it (IMAP, "
        "submission) straight at the server's dedicated address, so it needs a plan with "
        "features.dedicatedAddress: the operator publishes its A/AAAA records at that "
        "address (managed DNS) and gets it a certificate, which replaces the server's "
        "self-signed one once issued (CertificateReady says how far it is). Unset: clients "
        "use the provider's shared mail host names.",
    )

    @model_validator(mode="after")
    def _mail_host_in_a_domain(self) -> PersonalMailServerSpec:
        if self.mail_host is not None and not in_domains(self.mail_host, self.domains):
            raise ValueError(MAIL_HOST_MESSAGE)
        return self


MAIL_HOST_MESSAGE = (
    "mailHost must be one of spec.domains or a name under one (e.g. mail.example.org for "
    "example.org); add its domain to spec.domains or pick a name in one"
)


def in_domains(name: str, domains: list[str]) -> bool:
    """Whether `name` is one of `domains` or a name under one."""
    return any(name == d or name.endswith("." + d) for d in domains)


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
    x_validation(
        "!has(self.mailHost) || self.domains.exists(d, self.mailHost == d || "
        "self.mailHost.endsWith('.' + d))",
        MAIL_HOST_MESSAGE,
        field_path=".mailHost",
    ),
]


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
