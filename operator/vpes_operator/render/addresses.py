"""Who receives which address: mailboxes, forwards, aliases, postmasters, catch-alls.

Decisions made here:

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
- Forward from a mailbox (its user's own forwarding): the mailbox's mail goes to
  the targets, and stays in the mailbox too only when the mailbox is one of them
  (Postfix delivers an address that expands to itself). Its aliases follow it.
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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vpes_operator.models.server import PersonalMailServerSpec

from . import checks
from .checks import RenderError


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


def checked_mailboxes(
    spec: PersonalMailServerSpec, domains: tuple[str, ...], default_quota: int
) -> tuple[MailboxContext, ...]:
    out: dict[str, MailboxContext] = {}
    for m in spec.mailboxes:
        addr = checks.address(m.address, "mailbox address")
        local, _, domain = addr.rpartition("@")
        if domain not in domains:
            raise RenderError(f"mailbox {addr}: its domain is not one of spec.domains")
        if not checks.MAILBOX_LOCAL_RE.fullmatch(local):
            raise RenderError(
                f"mailbox {addr}: a mailbox name (the part before @) may only hold "
                "a-z, 0-9 and '.', '_' or '-' between them; use an alias for other "
                "addresses"
            )
        if addr in out:
            raise RenderError(f"mailbox {addr} appears twice in spec.mailboxes")
        quota = (
            default_quota
            if m.quota is None
            else checks.positive_bytes(m.quota, f"mailbox {addr} quota")
        )
        out[addr] = MailboxContext(addr, local, domain, quota, ())
    return tuple(out[a] for a in sorted(out))


def forward_entries(
    spec: PersonalMailServerSpec, domains: tuple[str, ...], mailboxes: set[str]
) -> list[VirtualAlias]:
    out: dict[str, VirtualAlias] = {}
    for f in spec.forwards:
        src = checks.address(f.from_, "forward 'from'")
        if src.rpartition("@")[2] not in domains:
            raise RenderError(f"forward from {src}: its domain is not one of spec.domains")
        if src in out:
            raise RenderError(f"forward from {src} appears twice in spec.forwards")
        targets = sorted({checks.address(t, f"forward {src} target") for t in f.to})
        if not targets:
            raise RenderError(f"forward from {src} has no target")
        if src in targets and src not in mailboxes:
            raise RenderError(f"forward from {src} names itself, which is no mailbox")
        out[src] = VirtualAlias(address=src, targets=tuple(targets), kind="forward")
    return [out[a] for a in sorted(out)]


def alias_claims(
    spec: PersonalMailServerSpec, domains: tuple[str, ...], explicit: set[str]
) -> dict[str, set[str]]:
    """address → mailboxes it delivers to; explicit addresses (mailboxes, forwards) win."""
    full: dict[str, set[str]] = {}
    bare: dict[str, set[str]] = {}
    for m in spec.mailboxes:
        for alias in m.aliases:
            if "@" in alias:
                addr = checks.address(alias, f"alias of mailbox {m.address}")
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
                if not checks.LOCAL_PART_RE.fullmatch(alias) or alias.startswith("#"):
                    raise RenderError(f"alias {alias!r} of mailbox {m.address} is not valid")
                for d in domains:
                    addr = f"{alias}@{d}"
                    if addr != m.address and addr not in explicit:
                        bare.setdefault(addr, set()).add(m.address)
    # A full address claimed explicitly by some mailbox is theirs alone; the bare
    # forms other mailboxes hold for the same address yield to it.
    claims = {**bare, **full}
    return {a: claims[a] for a in sorted(claims)}


def virtual_aliases(
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
    catch_alls = catch_all_entries(spec, domains, mailbox_addresses)
    caught = {c.address.removeprefix("@") for c in catch_alls}
    forwarded = {f.address for f in forwards}
    identities = [
        VirtualAlias(address=m.address, targets=(m.address,), kind="mailbox")
        for m in mailboxes
        if m.domain in caught and m.address not in forwarded  # its forward keeps it out
    ]
    return tuple(
        sorted(
            [*aliases, *forwards, *postmasters, *catch_alls, *identities],
            key=lambda v: v.address,
        )
    )


def catch_all_entries(
    spec: PersonalMailServerSpec, domains: tuple[str, ...], mailboxes: set[str]
) -> list[VirtualAlias]:
    out: dict[str, VirtualAlias] = {}
    for c in spec.catch_all:
        domain = c.domain
        if domain not in domains:
            raise RenderError(f"catch-all of {domain}: that domain is not one of spec.domains")
        if domain in out:
            raise RenderError(f"catch-all of {domain} appears twice in spec.catchAll")
        target = checks.address(c.to, f"catch-all of {domain} target")
        if target not in mailboxes:
            raise RenderError(
                f"catch-all of {domain}: its target {target} is not a mailbox of this server; "
                "add the mailbox or pick one of spec.mailboxes"
            )
        out[domain] = VirtualAlias(address=f"@{domain}", targets=(target,), kind="catch-all")
    return [out[d] for d in sorted(out)]


def with_aliases(
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


@dataclass(frozen=True)
class Addresses:
    """Every address a server receives, decided by the rules above."""

    # The mailboxes, each with the alias addresses it receives.
    mailboxes: tuple[MailboxContext, ...]
    # Aliases, forwards, postmasters, catch-alls (``@domain``) and the identity entries of
    # caught mailboxes, one entry per address, sorted.
    virtual_aliases: tuple[VirtualAlias, ...]
    # address → the mailboxes an alias delivers to (each may send as it).
    claims: dict[str, set[str]]
    owner_email: str

    @property
    def accepted(self) -> tuple[str, ...]:
        """Every address (and ``@domain`` of a catch-all) mail is accepted for, sorted."""
        found = {m.address for m in self.mailboxes} | {v.address for v in self.virtual_aliases}
        return tuple(sorted(found))


def resolve(
    spec: PersonalMailServerSpec, domains: tuple[str, ...], default_quota: int
) -> Addresses:
    """Who receives which address of `domains` (checked: ``RenderError`` when the spec
    cannot make a working configuration)."""
    mailboxes = checked_mailboxes(spec, domains, default_quota)
    mailbox_addresses = {m.address for m in mailboxes}
    forwards = forward_entries(spec, domains, mailbox_addresses)
    claims = alias_claims(spec, domains, mailbox_addresses | {f.address for f in forwards})
    owner_email = checks.address(spec.owner.email, "spec.owner.email")
    virtual = virtual_aliases(spec, domains, mailboxes, forwards, claims, owner_email)
    return Addresses(
        mailboxes=with_aliases(mailboxes, claims),
        virtual_aliases=virtual,
        claims=claims,
        owner_email=owner_email,
    )
