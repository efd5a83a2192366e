"""What can go wrong publishing or checking DNS, each with a reason and what to do."""

from __future__ import annotations

from ..models.conditions import Reason


class DNSError(Exception):
    """A problem that becomes part of a condition: a CamelCase reason and a message.

    `fatal` faults (the server is unreachable, the key is refused) stop a
    publish run: every other record would fail the same way.
    """

    reason: str = Reason.DNS_ERROR
    fatal = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnreachableError(DNSError):
    reason: str = Reason.DNS_SERVER_UNREACHABLE
    fatal = True


class KeyRejectedError(DNSError):
    reason: str = Reason.TSIG_KEY_REJECTED
    fatal = True


class ProviderNotConfiguredError(DNSError):
    reason: str = Reason.PROVIDER_NOT_CONFIGURED
    fatal = True


class ZoneNotServedError(DNSError):
    reason: str = Reason.ZONE_NOT_SERVED


class UpdateRefusedError(DNSError):
    reason: str = Reason.UPDATE_REFUSED


class RecordConflictError(DNSError):
    reason: str = Reason.RECORD_CONFLICT


class ChangedError(DNSError):
    """The RRset changed between reading and writing it (compare-and-swap failed)."""

    reason: str = Reason.CONCURRENT_CHANGE
