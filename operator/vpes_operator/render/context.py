"""Everything a tenant's configuration needs, computed once, checked, sorted.

``build_context`` turns (PMS name and namespace, spec, plan, platform settings)
into a ``TenantContext``: plain frozen values the templates only print and
loop over. It is pure and total: the same input gives an equal context, the
order of lists in the spec does not matter (everything is sorted), and bad
input raises ``RenderError`` (permanent: a person must fix the spec or the
settings) instead of producing a configuration that would misbehave.

Decisions made here:

- Host name: ``<name>.<namespace>.vpes.internal`` (``layout.HOSTNAME_SUFFIX``).
  It does not change when the customer's domains change and names no customer.
- Aliases: a full address is that address; a bare local part is that local part
  in every domain of the server *where it is free*: a mailbox, a forward or an
  explicit alias of the same address wins over the bare form. A full-address
  alias that is another mailbox's address or a forward's source is an error (it
  would silently steal that mail), and so is one outside ``spec.domains`` (the
  mailbox could then send as someone else's address). A bare alias also yields
  to another mailbox's full-address alias of the same address. An address
  claimed the same way by several mailboxes delivers to all of them, and each
  of them may send as it.
- Postmaster: RFC 5321 requires ``postmaster@`` every domain; where the spec
  defines none, it is forwarded to the owner's contact address (a catch-all
  does not take it).
- Catch-all (``spec.catchAll``, off by default): ``@domain → mailbox`` in
  virtual_alias_maps, so an unknown address of that domain is accepted and
  delivered to the mailbox; domains without one still refuse unknown
  recipients at RCPT time. Postfix tries ``@domain`` for *every* address of
  the domain that has no entry of its own, so each mailbox of a catch-all
  domain gets an identity entry (``address → address``) that keeps its own
  mail (and its ``+detail`` forms) out of the catch-all. The target must be a
  mailbox of the server, and a domain has at most one catch-all.
- Mailbox addresses are also Dovecot logins and directory names, so their
  local part is limited to ``a-z 0-9 . _ -`` (no ``+``: that is the detail
  delimiter; no ``/``: it would nest maildirs).
- Quotas and the message size limit are bytes (``vpes_operator.quantity``).
- ``edge_networks`` (from the settings) are trusted to send PROXY protocol
  headers and, for Dovecot, to forward the client's address (``login_trusted_
  networks``); they are *not* Postfix ``mynetworks``: Postfix lets only
  loopback relay without SASL, so mail the edge hands in is never relayed on.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from vpes_operator.models.common import (
    ADDRESS_PATTERN,
    DOMAIN_PATTERN,
    LABEL_PATTERN,
    LOCAL_PART_ONLY_PATTERN,
)
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import PersonalMailServerSpec
from vpes_operator.quantity import QuantityError, parse_bytes
from vpes_operator.settings import OperatorSettings

from .layout import HOSTNAME_SUFFIX, dkim_key_path

_DOMAIN_RE = re.compile(DOMAIN_PATTERN)
_ADDRESS_RE = re.compile(ADDRESS_PATTERN)
_LOCAL_PART_RE = re.compile(LOCAL_PART_ONLY_PATTERN)
# A mailbox's local part: a Dovecot login (auth_username_chars) and a directory.
_MAILBOX_LOCAL_RE = re.compile(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?")
# A DNS label (Kubernetes names and namespaces are made of these).
_LABEL_RE = re.compile(LABEL_PATTERN)
# Postfix relayhost: host, [host] or [ipv6:addr], optional :port. No spaces.
_RELAY_RE = re.compile(r"(\[(ipv6:)?[A-Za-z0-9.:-]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


class RenderError(ValueError):
    """The spec or the settings cannot make a working configuration (permanent)."""


@dataclass(frozen=True)
class MailboxContext:
    address: str
    local_part: str
    domain: str
    quota_bytes: int
    # Every other address delivered to this mailbox (expanded, sorted).
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class VirtualAlias:
    """One line of Postfix virtual_alias_maps: address → targets.

    ``catch-all`` entries have the address ``@domain``; ``mailbox`` entries map
    a mailbox to itself (only in catch-all domains, see the module docstring).
    """

    address: str
    targets: tuple[str, ...]
    kind: Literal["alias", "forward", "postmaster", "catch-all", "mailbox"]


@dataclass(frozen=True)
class SenderLogin:
    """One line of smtpd_sender_login_maps: who may send as an address."""

    address: str
    logins: tuple[str, ...]


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    path: str  # the private key, under the secrets mount


@dataclass(frozen=True)
class TenantContext:
    name: str
    namespace: str
    hostname: str
    owner_email: str
    domains: tuple[str, ...]
    mailboxes: tuple[MailboxContext, ...]
    # Aliases, forwards and postmaster defaults, one entry per address, sorted.
    virtual_aliases: tuple[VirtualAlias, ...]
    sender_logins: tuple[SenderLogin, ...]
    default_quota_bytes: int
    max_message_size_bytes: int
    relay_host: str  # Postfix relayhost syntax; "" delivers directly
    edge_networks: tuple[str, ...]  # CIDRs, IPv4 first, normalised
    dkim_selector: str
    dkim_keys: tuple[DkimKey, ...]

    @property
    def forwards(self) -> tuple[VirtualAlias, ...]:
        return tuple(v for v in self.virtual_aliases if v.kind == "forward")

    @property
    def aliases(self) -> tuple[VirtualAlias, ...]:
        return tuple(v for v in self.virtual_aliases if v.kind == "alias")

    @property
    def catch_alls(self) -> tuple[VirtualAlias, ...]:
        return tuple(v for v in self.virtual_aliases if v.kind == "catch-all")


def build_context(
    name: str,
    namespace: str,
    spec: PersonalMailServerSpec,
    plan: MailPlanSpec,
    settings: OperatorSettings,
) -> TenantContext:
    """Compute, check and sort everything the tenant's configuration needs."""
    hostname = _hostname(name, namespace)
    domains = _domains(spec.domains)
    default_quota = _bytes(plan.default_quota, "the plan's defaultQuota")
    mailboxes = _mailboxes(spec, domains, default_quota)
    mailbox_addresses = {m.address for m in mailboxes}
    forwards = _forwards(spec, domains, mailbox_addresses)
    claims = _alias_claims(spec, domains, mailbox_addresses | {f.address for f in forwards})
    owner_email = _address(spec.owner.email, "spec.owner.email")

    virtual = _virtual(spec, domains, mailboxes, forwards, claims, owner_email)

    mailboxes = _with_aliases(mailboxes, claims)
    senders = [SenderLogin(address=m.address, logins=(m.address,)) for m in mailboxes]
    senders += [SenderLogin(address=a, logins=tuple(sorted(o))) for a, o in claims.items()]

    selector = settings.dkim_selector
    if not _LABEL_RE.fullmatch(selector):
        raise RenderError(f"settings.dkim_selector {selector!r} is not a DNS label")
    return TenantContext(
        name=name,
        namespace=namespace,
        hostname=hostname,
        owner_email=owner_email,
        domains=domains,
        mailboxes=mailboxes,
        virtual_aliases=virtual,
        sender_logins=tuple(sorted(senders, key=lambda s: s.address)),
        default_quota_bytes=default_quota,
        max_message_size_bytes=_bytes(plan.max_message_size, "the plan's maxMessageSize"),
        relay_host=_relay_host(settings.relay_host),
        edge_networks=_networks(settings.edge_networks),
        dkim_selector=selector,
        dkim_keys=tuple(DkimKey(d, selector, dkim_key_path(d)) for d in domains),
    )


def _virtual(
    spec: PersonalMailServerSpec,
    domains: tuple[str, ...],
    mailboxes: Sequence[MailboxContext],
    forwards: Sequence[VirtualAlias],
    claims: dict[str, set[str]],
    owner_email: str,
) -> tuple[VirtualAlias, ...]:
    """Every virtual address, sorted: aliases, forwards, each domain's postmaster (to the
    owner unless taken), catch-alls, and the mailboxes of caught domains themselves."""
    mailbox_addresses = {m.address for m in mailboxes}
    aliases = [
        VirtualAlias(address=addr, targets=tuple(sorted(owners)), kind="alias")
        for addr, owners in claims.items()
    ]
    taken = mailbox_addresses | {f.address for f in forwards} | claims.keys()
    postmasters = [
        VirtualAlias(address=f"postmaster@{d}", targets=(owner_email,), kind="postmaster")
        for d in domains
        if f"postmaster@{d}" not in taken
    ]
    catch_alls = _catch_alls(spec, domains, mailbox_addresses)
    caught = {c.address.removeprefix("@") for c in catch_alls}
    identities = [
        VirtualAlias(address=m.address, targets=(m.address,), kind="mailbox")
        for m in mailboxes
        if m.domain in caught
    ]
    return tuple(
        sorted(
            [*aliases, *forwards, *postmasters, *catch_alls, *identities],
            key=lambda v: v.address,
        )
    )


def _with_aliases(
    mailboxes: Sequence[MailboxContext], claims: dict[str, set[str]]
) -> tuple[MailboxContext, ...]:
    """Each mailbox with the alias addresses it receives."""
    by_owner: dict[str, list[str]] = {m.address: [] for m in mailboxes}
    for addr, owners in claims.items():
        for owner in owners:
            by_owner[owner].append(addr)
    return tuple(
        MailboxContext(
            address=m.address,
            local_part=m.local_part,
            domain=m.domain,
            quota_bytes=m.quota_bytes,
            aliases=tuple(sorted(by_owner[m.address])),
        )
        for m in mailboxes
    )


def _hostname(name: str, namespace: str) -> str:
    for what, value in (("name", name), ("namespace", namespace)):
        labels = value.split(".")
        if not all(_LABEL_RE.fullmatch(label) for label in labels):
            raise RenderError(f"the server's {what} {value!r} is not made of DNS labels")
    hostname = f"{name}.{namespace}.{HOSTNAME_SUFFIX}"
    if len(hostname) > 253:
        raise RenderError(f"host name {hostname!r} is longer than 253 characters")
    return hostname


def _domains(domains: Iterable[str]) -> tuple[str, ...]:
    out = sorted(set(domains))
    if not out:
        raise RenderError("spec.domains is empty: a mail server needs at least one domain")
    for d in out:
        if not _DOMAIN_RE.fullmatch(d):
            raise RenderError(f"domain {d!r} is not a lowercase IDNA-encoded domain name")
    return tuple(out)


def _address(addr: str, what: str) -> str:
    if not _ADDRESS_RE.fullmatch(addr) or addr.startswith("#"):
        raise RenderError(f"{what} {addr!r} is not a valid lowercase mail address")
    return addr


def _bytes(value: str, what: str) -> int:
    """A positive size: 0 would mean "unlimited" to both Postfix and Dovecot."""
    try:
        n = parse_bytes(value)
    except QuantityError as exc:
        raise RenderError(f"{what}: {exc}") from None
    if n <= 0:
        raise RenderError(f"{what} must be more than 0 bytes (0 would mean unlimited)")
    return n


def _mailboxes(
    spec: PersonalMailServerSpec, domains: tuple[str, ...], default_quota: int
) -> tuple[MailboxContext, ...]:
    out: dict[str, MailboxContext] = {}
    for m in spec.mailboxes:
        addr = _address(m.address, "mailbox address")
        local, _, domain = addr.rpartition("@")
        if domain not in domains:
            raise RenderError(f"mailbox {addr}: its domain is not one of spec.domains")
        if not _MAILBOX_LOCAL_RE.fullmatch(local):
            raise RenderError(
                f"mailbox {addr}: a mailbox name (the part before @) may only hold "
                "a-z, 0-9 and '.', '_' or '-' between them; use an alias for other "
                "addresses"
            )
        if addr in out:
            raise RenderError(f"mailbox {addr} appears twice in spec.mailboxes")
        quota = default_quota if m.quota is None else _bytes(m.quota, f"mailbox {addr} quota")
        out[addr] = MailboxContext(addr, local, domain, quota, ())
    return tuple(out[a] for a in sorted(out))


def _forwards(
    spec: PersonalMailServerSpec, domains: tuple[str, ...], mailboxes: set[str]
) -> list[VirtualAlias]:
    out: dict[str, VirtualAlias] = {}
    for f in spec.forwards:
        src = _address(f.from_, "forward 'from'")
        if src.rpartition("@")[2] not in domains:
            raise RenderError(f"forward from {src}: its domain is not one of spec.domains")
        if src in mailboxes:
            raise RenderError(f"forward from {src}: that address is a mailbox")
        if src in out:
            raise RenderError(f"forward from {src} appears twice in spec.forwards")
        targets = sorted({_address(t, f"forward {src} target") for t in f.to})
        if not targets:
            raise RenderError(f"forward from {src} has no target")
        out[src] = VirtualAlias(address=src, targets=tuple(targets), kind="forward")
    return [out[a] for a in sorted(out)]


def _catch_alls(
    spec: PersonalMailServerSpec, domains: tuple[str, ...], mailboxes: set[str]
) -> list[VirtualAlias]:
    out: dict[str, VirtualAlias] = {}
    for c in spec.catch_all:
        domain = c.domain
        if domain not in domains:
            raise RenderError(f"catch-all of {domain}: that domain is not one of spec.domains")
        if domain in out:
            raise RenderError(f"catch-all of {domain} appears twice in spec.catchAll")
        target = _address(c.to, f"catch-all of {domain} target")
        if target not in mailboxes:
            raise RenderError(
                f"catch-all of {domain}: its target {target} is not a mailbox of this server; "
                "add the mailbox or pick one of spec.mailboxes"
            )
        out[domain] = VirtualAlias(address=f"@{domain}", targets=(target,), kind="catch-all")
    return [out[d] for d in sorted(out)]


def _alias_claims(
    spec: PersonalMailServerSpec, domains: tuple[str, ...], explicit: set[str]
) -> dict[str, set[str]]:
    """address → mailboxes it delivers to; explicit addresses (mailboxes, forwards) win."""
    full: dict[str, set[str]] = {}
    bare: dict[str, set[str]] = {}
    for m in spec.mailboxes:
        for alias in m.aliases:
            if "@" in alias:
                addr = _address(alias, f"alias of mailbox {m.address}")
                if addr == m.address:
                    continue
                if addr.rpartition("@")[2] not in domains:
                    raise RenderError(
                        f"alias {addr} of mailbox {m.address}: its domain is not one of "
                        "spec.domains"
                    )
                if addr in explicit:
                    raise RenderError(
                        f"alias {addr} of mailbox {m.address} is already a mailbox or a "
                        "forward; remove one of them"
                    )
                full.setdefault(addr, set()).add(m.address)
            else:
                if not _LOCAL_PART_RE.fullmatch(alias) or alias.startswith("#"):
                    raise RenderError(f"alias {alias!r} of mailbox {m.address} is not valid")
                for d in domains:
                    addr = f"{alias}@{d}"
                    if addr != m.address and addr not in explicit:
                        bare.setdefault(addr, set()).add(m.address)
    # A full address claimed explicitly by some mailbox is theirs alone; the bare
    # forms other mailboxes hold for the same address yield to it.
    claims = {**bare, **full}
    return {a: claims[a] for a in sorted(claims)}


def _relay_host(value: str) -> str:
    value = value.strip()
    if value and not _RELAY_RE.fullmatch(value):
        raise RenderError(
            f"settings.relay_host {value!r} is not a Postfix relayhost: write host, "
            "[host] or [host]:port"
        )
    return value


def _networks(values: Iterable[str]) -> tuple[str, ...]:
    nets: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for v in values:
        try:
            nets.add(ipaddress.ip_network(v.strip(), strict=False))
        except ValueError:
            raise RenderError(f"settings.edge_networks: {v!r} is not a CIDR network") from None
    return tuple(
        str(n) for n in sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    )
