"""The parts of a PersonalMailServer's spec a customer edits most: the names and
addresses it accepts, its owner, its mailboxes (with their vacation replies and
OpenPGP keys), forwards and catch-alls. `models.server` puts them together."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from .common import (
    ADDRESS_PATTERN,
    ALIAS_PATTERN,
    DOMAIN_PATTERN,
    MAILBOX_ADDRESS_PATTERN,
    ByteSize,
    Model,
    SecretKeyRef,
    friendly,
    x_validation,
)
from .openpgp_key import (
    MAX_OPENPGP_KEY,
    OPENPGP_KEY_MESSAGE,
    OPENPGP_KEY_RULE,
    OPENPGP_PRIVATE_BLOCK_MESSAGE,
    armored_public_key,
)
from .server_limits import (
    MAX_ALIASES,
    MAX_FORWARD_TARGETS,
    MAX_VACATION_DAYS,
    MAX_VACATION_MESSAGE,
    MAX_VACATION_SUBJECT,
)

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
