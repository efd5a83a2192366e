"""PersonalMailServer (pms): one customer's own mail server (namespaced)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from .. import API_VERSION
from .common import (
    NAME_PATTERN,
    Model,
    Object,
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
from .server_mailbox import (
    ADDRESS_MESSAGE,
    DOMAIN_MESSAGE,
    MAILBOX_MESSAGE,
    ONE_LINE_PATTERN,
    Address,
    Alias,
    ArmoredPublicKey,
    CatchAll,
    DNSMode,
    Domain,
    ExternalAddress,
    Forward,
    Mailbox,
    MailboxAddress,
    Owner,
    Vacation,
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
