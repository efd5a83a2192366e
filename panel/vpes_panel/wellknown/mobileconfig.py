"""An Apple configuration profile (.mobileconfig) that sets up one mailbox in the
Mail app of an iPhone, iPad or Mac: IMAP and SMTP submission from the same
`client_services` the SRV records are made from (the edge's hosts, or the server's
own mail host when it is served).

Unsigned (the device says so when installing it) and without any password: the
device asks for it while installing. The profile's identifiers are derived from
the address and the IMAP host, so installing a newer download replaces the older
profile instead of adding a second account. plistlib writes (and escapes) the XML.
"""

from __future__ import annotations

import plistlib
import re
import uuid
from typing import Any

from vpes_operator.dns import records
from vpes_operator.settings import OperatorSettings

MEDIA_TYPE = "application/x-apple-aspen-config"
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


def _id(kind: str, address: str, host: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"vpes:{kind}:{address}:{host}")).upper()


def filename(address: str) -> str:
    """A file name a browser can save it under (no quote, slash or control character)."""
    return _UNSAFE.sub("_", address) + ".mobileconfig"


def profile(
    settings: OperatorSettings,
    address: str,
    display_name: str = "",
    mail_host: str | None = None,
) -> bytes:
    """The profile of `address`; at `mail_host` (the server's served mail host, see
    `records.served_mail_host`), else at the edge's hosts."""
    imap = records.client_service(settings, "imap", mail_host)
    smtp = records.client_service(settings, "smtp", mail_host)
    account_id = _id("account", address, imap.host)
    account: dict[str, Any] = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"io.vpes.mail.account.{account_id}",
        "PayloadUUID": account_id,
        "PayloadDisplayName": address,
        "EmailAccountDescription": address,
        "EmailAccountType": "EmailTypeIMAP",
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": imap.host,
        "IncomingMailServerPortNumber": imap.port,
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": smtp.host,
        "OutgoingMailServerPortNumber": smtp.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": address,
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    if display_name:
        account["EmailAccountName"] = display_name
    profile_id = _id("profile", address, imap.host)
    return plistlib.dumps(
        {
            "PayloadType": "Configuration",
            "PayloadVersion": 1,
            "PayloadIdentifier": f"io.vpes.mail.{profile_id}",
            "PayloadUUID": profile_id,
            "PayloadDisplayName": f"Mail: {address}",
            "PayloadDescription": (
                f"Sets up {address} in Mail (incoming {imap.host}, outgoing {smtp.host}). "
                "Your device asks for the mailbox's password while installing it."
            ),
            "PayloadRemovalDisallowed": False,
            "PayloadContent": [account],
        },
        fmt=plistlib.FMT_XML,
        sort_keys=True,
    )
