"""What can go wrong publishing or checking DNS, each with a reason and what to do."""

from __future__ import annotations


class DNSError(Exception):
    """A problem that becomes part of a condition: a CamelCase reason and a message.

    `fatal` faults (the server is unreachable, the key is refused) stop a
    publish run: every other record would fail the same way.
    """

    reason = "DNSError"
    fatal = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnreachableError(DNSError):
    reason = "DNSServerUnreachable"
    fatal = True


class KeyRejectedError(DNSError):
    reason = "TSIGKeyRejected"
    fatal = True


class ProviderNotConfiguredError(DNSError):
    reason = "ProviderNotConfigured"
    fatal = True


class ZoneNotServedError(DNSError):
    reason = "ZoneNotServed"


class UpdateRefusedError(DNSError):
    reason = "UpdateRefused"


class RecordConflictError(DNSError):
    reason = "RecordConflict"


class ChangedError(DNSError):
    """The RRset changed between reading and writing it (compare-and-swap failed)."""

    reason = "ConcurrentChange"
