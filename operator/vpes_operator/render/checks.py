"""Checks of the single values a tenant context is made of.

Each function takes one value from the spec, the plan or the platform settings
and returns it checked (and, where it says so, normalised), or raises
``RenderError`` saying what a person must fix.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from vpes_operator.models.common import (
    ADDRESS_PATTERN,
    DOMAIN_PATTERN,
    LABEL_PATTERN,
    LOCAL_PART_ONLY_PATTERN,
)
from vpes_operator.quantity import QuantityError, parse_bytes

from .layout import HOSTNAME_SUFFIX

_DOMAIN_RE = re.compile(DOMAIN_PATTERN)
_ADDRESS_RE = re.compile(ADDRESS_PATTERN)
LOCAL_PART_RE = re.compile(LOCAL_PART_ONLY_PATTERN)
# A mailbox's local part: a Dovecot login (auth_username_chars) and a directory.
MAILBOX_LOCAL_RE = re.compile(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?")
# A DNS label (Kubernetes names and namespaces are made of these).
_LABEL_RE = re.compile(LABEL_PATTERN)
# Postfix relayhost: host, [host] or [ipv6:addr], optional :port. No spaces.
_RELAY_RE = re.compile(r"(\[(ipv6:)?[A-Za-z0-9.:-]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


class RenderError(ValueError):
    """The spec or the settings cannot make a working configuration (permanent)."""


def hostname(name: str, namespace: str) -> str:
    for what, value in (("name", name), ("namespace", namespace)):
        labels = value.split(".")
        if not all(_LABEL_RE.fullmatch(label) for label in labels):
            raise RenderError(f"the server's {what} {value!r} is not made of DNS labels")
    host = f"{name}.{namespace}.{HOSTNAME_SUFFIX}"
    if len(host) > 253:
        raise RenderError(f"host name {host!r} is longer than 253 characters")
    return host


def domains(values: Iterable[str]) -> tuple[str, ...]:
    out = sorted(set(values))
    if not out:
        raise RenderError("spec.domains is empty: a mail server needs at least one domain")
    for d in out:
        if not _DOMAIN_RE.fullmatch(d):
            raise RenderError(f"domain {d!r} is not a lowercase IDNA-encoded domain name")
    return tuple(out)


def address(addr: str, what: str) -> str:
    if not _ADDRESS_RE.fullmatch(addr) or addr.startswith("#"):
        raise RenderError(f"{what} {addr!r} is not a valid lowercase mail address")
    return addr


def positive_bytes(value: str, what: str) -> int:
    """A positive size: 0 would mean "unlimited" to both Postfix and Dovecot."""
    try:
        n = parse_bytes(value)
    except QuantityError as exc:
        raise RenderError(f"{what}: {exc}") from None
    if n <= 0:
        raise RenderError(f"{what} must be more than 0 bytes (0 would mean unlimited)")
    return n


def dkim_selector(selector: str) -> str:
    if not _LABEL_RE.fullmatch(selector):
        raise RenderError(f"settings.dkim_selector {selector!r} is not a DNS label")
    return selector


def relay_host(value: str) -> str:
    value = value.strip()
    if value and not _RELAY_RE.fullmatch(value):
        raise RenderError(
            f"settings.relay_host {value!r} is not a Postfix relayhost: write host, "
            "[host] or [host]:port"
        )
    return value


def networks(values: Iterable[str]) -> tuple[str, ...]:
    nets: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for v in values:
        try:
            nets.add(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise RenderError(f"settings.edge_networks: {v!r} is not a CIDR network") from None
    return tuple(
        str(n) for n in sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    )
