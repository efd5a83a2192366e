"""Domain names and mail addresses as requests carry them, made comparable with the
servers' spec.domains (lower case, IDNA-encoded, no trailing dot) or refused."""

from __future__ import annotations

import re

import idna

MAX_ADDRESS = 254
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class BadAddressError(ValueError):
    """Not a mail address; the message says why (shown to the client)."""


def domain(text: str) -> str | None:
    """`text` as a hosted domain would be written, or None if it is no domain name."""
    name = text.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return None
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.match(x) for x in labels):
        return None
    return name


def host(header: str) -> str | None:
    """The Host header's name (without its port), as `domain` writes it."""
    name = header.strip()
    if name.startswith("["):
        return None  # an IPv6 literal: never a hosted name
    head, _, port = name.rpartition(":")
    if head and port.isdigit():
        name = head
    return domain(name)


def address(text: str) -> tuple[str, str]:
    """(the address as given, with its domain as `domain` writes it); BadAddressError
    when it is not one. The local part is not checked further: it is only echoed, as
    the login name a client should use."""
    value = text.strip()
    if len(value) > MAX_ADDRESS:
        raise BadAddressError(f"a mail address has at most {MAX_ADDRESS} characters")
    local, at, rest = value.rpartition("@")
    if not at or not local:
        raise BadAddressError("a mail address looks like name@example.org")
    if any(c.isspace() or not c.isprintable() for c in local):
        raise BadAddressError("a mail address holds no spaces or control characters")
    name = domain(rest)
    if name is None:
        raise BadAddressError(f"{rest!r} is not a domain name")
    return f"{local}@{name}", name
