"""A mailbox user's own page, as data: their mailbox, its use, and its forwarding.

Forwarding of one's own mail is a `spec.forwards` entry whose `from` is the
mailbox's own address. Postfix's virtual_alias_maps replaces an address by its
targets, so a forward alone takes the mail away from the mailbox; "keep a copy"
adds the mailbox's own address to the targets (an address that maps to itself
stops the expansion there and is delivered). Whether the operator renders such
an entry is asked of its own rules (`forwarding_supported`): the panel shows the
form only where it works, and never writes a forward the operator would refuse
(a refused spec stops the whole server's configuration).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from vpes_operator.models.common import ADDRESS_PATTERN
from vpes_operator.models.server import MAX_FORWARD_TARGETS, PersonalMailServerSpec
from vpes_operator.render.addresses import resolve
from vpes_operator.render.checks import RenderError

from .health import human_bytes

JSON = dict[str, Any]
_ADDRESS = re.compile(ADDRESS_PATTERN)
_SEPARATORS = re.compile(r"[\s,;]+")


class FieldError(ValueError):
    """What is wrong with a field's value, for the person who typed it."""


@dataclass(frozen=True)
class Quota:
    used: str
    limit: str
    messages: int | None
    percent: int | None  # of the quota used; None until Dovecot has counted


@dataclass(frozen=True)
class Forwarding:
    targets: tuple[str, ...]
    keep_copy: bool

    @property
    def on(self) -> bool:
        return bool(self.targets)


@dataclass(frozen=True)
class MailboxView:
    address: str
    display_name: str
    aliases: tuple[str, ...]
    quota: Quota | None
    forwarding: Forwarding


def mailbox(spec: JSON, status: JSON, address: str) -> MailboxView | None:
    """`address`'s mailbox as its user sees it; None when the spec has no such mailbox."""
    found = next((m for m in spec.get("mailboxes") or [] if m.get("address") == address), None)
    if found is None:
        return None
    domains = [str(d) for d in spec.get("domains") or []]
    aliases = [
        str(a) if "@" in str(a) else f"{a}@{d}" for a in found.get("aliases") or [] for d in domains
    ]
    return MailboxView(
        address=address,
        display_name=str(found.get("displayName") or ""),
        aliases=tuple(sorted(set(aliases))),
        quota=quota(status, address),
        forwarding=forwarding(spec, address),
    )


def quota(status: JSON, address: str) -> Quota | None:
    usage = (status.get("usage") or {}).get("mailboxUsage") or []
    mine = next((u for u in usage if u.get("address") == address), None)
    if mine is None:
        return None
    limit, used = int(mine.get("quotaBytes") or 0), mine.get("usedBytes")
    percent = None if used is None or limit <= 0 else min(100, round(100 * int(used) / limit))
    return Quota(
        used=human_bytes(None if used is None else int(used)),
        limit=human_bytes(limit),
        messages=None if mine.get("messages") is None else int(mine["messages"]),
        percent=percent,
    )


def forwarding(spec: JSON, address: str) -> Forwarding:
    entry = next((f for f in spec.get("forwards") or [] if f.get("from") == address), None)
    if entry is None:
        return Forwarding((), False)
    to = [str(t) for t in entry.get("to") or []]
    return Forwarding(tuple(t for t in to if t != address), address in to)


def parse_targets(text: str, own: str, keep_copy: bool) -> tuple[str, ...]:
    """The addresses typed into the forwarding field (commas, spaces or lines between
    them), lowercased, each once; FieldError saying what to fix."""
    found: list[str] = []
    for raw in _SEPARATORS.split(text.strip()):
        if not raw:
            continue
        addr = raw.lower()
        if len(addr) > 254 or not _ADDRESS.fullmatch(addr):
            raise FieldError(
                f"{raw[:80]} is not a mail address. Write addresses like alice@example.org, "
                "separated by commas."
            )
        if addr == own:
            raise FieldError(
                f"{own} is this mailbox. To keep your mail here too, tick "
                "“Keep a copy in this mailbox” instead."
            )
        if addr not in found:
            found.append(addr)
    room = MAX_FORWARD_TARGETS - (1 if keep_copy else 0)
    if len(found) > room:
        raise FieldError(
            f"Forward to at most {room} addresses{' when you keep a copy' if keep_copy else ''} "
            f"(you gave {len(found)})."
        )
    return tuple(found)


def set_forwarding(spec: JSON, address: str, targets: tuple[str, ...], keep_copy: bool) -> None:
    """Mutate `spec` so that `address`'s mail goes to `targets` (and stays, with
    `keep_copy`); no targets: no forward at all."""
    forwards = [f for f in spec.get("forwards") or [] if f.get("from") != address]
    if targets:
        to = [*targets, address] if keep_copy else list(targets)
        forwards.append({"from": address, "to": to})
    spec["forwards"] = forwards


@functools.cache
def forwarding_supported() -> bool:
    """Whether the operator renders a forward whose `from` is a mailbox (its own
    rules, asked with a small spec): where it refuses one, the panel offers no form."""
    probe = PersonalMailServerSpec.model_validate(
        {
            "plan": "probe",
            "owner": {"email": "owner@example.net"},
            "domains": ["example.org"],
            "mailboxes": [{"address": "a@example.org"}],
            "forwards": [{"from": "a@example.org", "to": ["b@example.net", "a@example.org"]}],
        }
    )
    try:
        resolve(probe, ("example.org",), 1 << 20)
    except RenderError:
        return False
    return True


def check_spec(spec: JSON) -> str | None:
    """The operator's own objection to `spec`'s addresses (None: it would render them)."""
    try:
        parsed = PersonalMailServerSpec.model_validate(spec)
        resolve(parsed, tuple(parsed.domains), 1 << 20)
    except RenderError as e:
        return str(e)
    except ValueError:
        return None  # the API server's validation says it better, next to the field
    return None
