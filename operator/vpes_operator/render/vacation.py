"""Vacation replies (``spec.mailboxes[].vacation``) as one Sieve script.

Every mailbox's reply is in one script, ``vacation.sieve`` of the tenant
ConfigMap (``sieve/vacation.sieve`` under ``/etc/vpes/config``), which Dovecot
runs for every user after their own script (``sieve_after``). A file per user
would need a ConfigMap ``items`` entry each, and every change of those entries
would restart the pod; one file with a fixed key is swapped by the kubelet in
place. The script picks the user's block by Dovecot's user name (the
``vnd.dovecot.environment`` extension, allowed in global scripts only), so a
reply is sent for its own mailbox alone. It is compiled into each user's home
(``bindir``; the ConfigMap is read-only).

Decisions:

- The last day (``until``) is checked by the script itself (``currentdate``,
  UTC), so replies stop after it with no change to the spec and no reconcile.
- No reply to mail the edge called spam (its ``X-Spam: Yes``: the junk script
  files it into Junk and stops the sequence before this script runs; the
  guard here holds even if it did not), nor to lists, bulk or automatic mail
  (Pigeonhole's vacation skips most of these itself; the guards say it here).
- Text from the spec goes into the script only through ``quoted`` (a quoted
  string: backslash and double quote escaped, no line break) and ``text_block``
  (a multi-line ``text:`` string, dot-stuffed): nothing a user writes can end
  the string and add Sieve commands. The script never requires ``variables``,
  so ``${...}`` in a reply is printed as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from vpes_operator.models.server import PersonalMailServerSpec

from .addresses import MailboxContext
from .checks import RenderError
from .layout import VACATION_BIN_DIR, VACATION_SCRIPT_KEY, VACATION_SCRIPT_PATH

__all__ = [
    "VacationContext",
    "build",
    "quoted",
    "text_block",
    "values",
]

# The script and everything else share one ConfigMap (1 MiB): the model allows
# at most MAX_VACATIONS replies on at once; this bounds what aliases add.
MAX_SCRIPT_BYTES = 512 * 1024
# Control characters other than tab and line feed (after line endings are made
# LF) never reach the script.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class VacationContext:
    """One mailbox's reply, as the script says it."""

    address: str
    # The mailbox and its aliases: only mail addressed to one of these is answered.
    addresses: tuple[str, ...]
    subject: str
    message: str
    days: int
    until: date | None


def build(
    spec: PersonalMailServerSpec, mailboxes: Iterable[MailboxContext]
) -> tuple[VacationContext, ...]:
    """The replies that are on, by address (a mailbox's own aliases included)."""
    by_address = {m.address: m for m in mailboxes}
    out = []
    for m in spec.mailboxes:
        v = m.vacation
        if v is None or not v.enabled or m.address not in by_address:
            continue
        out.append(
            VacationContext(
                address=m.address,
                addresses=(m.address, *by_address[m.address].aliases),
                subject=v.subject,
                message=v.message,
                days=v.days,
                until=v.until,
            )
        )
    return tuple(sorted(out, key=lambda v: v.address))


def quoted(value: str) -> str:
    """``value`` as a Sieve quoted string; a line break in it is refused."""
    if "\r" in value or "\n" in value:
        raise RenderError(f"{value[:40]!r}...: a Sieve quoted string here is one line")
    clean = _CONTROL.sub("", _valid_utf8(value))
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def string_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(quoted(v) for v in values) + "]"


def text_block(value: str) -> str:
    """``value`` as a Sieve multi-line string (RFC 5228 2.4.2): ``text:``, the lines
    (one starting with '.' gets another, dot-stuffing), and a line with a single '.'.
    Line endings become LF; trailing blank lines go."""
    text = _valid_utf8(value).replace("\r\n", "\n").replace("\r", "\n")
    lines = _CONTROL.sub("", text).rstrip("\n").split("\n")
    body = "".join(f".{line}\n" if line.startswith(".") else f"{line}\n" for line in lines)
    return f"text:\n{body}.\n"


def _valid_utf8(value: str) -> str:
    """Lone surrogates (JSON allows them) cannot be written as UTF-8: replaced."""
    return value.encode("utf-8", "replace").decode("utf-8")


def values(vacations: tuple[VacationContext, ...]) -> dict[str, Any]:
    """What vacation.sieve.j2 and dovecot.conf.j2 print: every string already quoted."""
    return {
        "vacation": {
            "on": bool(vacations),
            "script": VACATION_SCRIPT_PATH,
            "bindir": VACATION_BIN_DIR,
            "key": VACATION_SCRIPT_KEY,
            "replies": [
                {
                    "address": v.address,
                    "user": quoted(v.address),
                    "addresses": string_list(v.addresses),
                    "subject": quoted(v.subject),
                    "days": v.days,
                    "until": quoted(v.until.isoformat()) if v.until else "",
                    "message": text_block(v.message),
                }
                for v in vacations
            ],
        }
    }


def check_size(script: str) -> str:
    """The rendered script, refused when it would crowd the ConfigMap."""
    size = len(script.encode())
    if size > MAX_SCRIPT_BYTES:
        raise RenderError(
            f"the vacation replies take {size} bytes, more than {MAX_SCRIPT_BYTES}: shorten "
            "some replies or turn some off (mailboxes with many aliases count more)"
        )
    return script
