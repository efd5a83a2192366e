"""What a person typed, checked and turned into what the spec holds, with messages that
say how to fix it; and the API server's refusals mapped back to the form's fields.

These checks come first so that a plain mistake gets a plain message next to its
field, but the API server's own validation (the CRD's schema and CEL rules)
always has the last word: whatever it refuses comes back through `apply_causes`.
Every function here is pure (no API calls), so each rule has a table-driven test.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import idna
from vpes_operator.models.common import DOMAIN_PATTERN, MAILBOX_LOCAL_PATTERN
from vpes_operator.models.plan import MailPlanSpec

from .web import Form

JSON = dict[str, Any]
T = TypeVar("T")

MAX_DOMAIN = 253
MAX_LOCAL = 64  # RFC 5321's limit on a local part
MAX_ADDRESS = 254
MAX_DISPLAY_NAME = 200
MIN_QUOTA, MAX_QUOTA = 1 << 20, 16 << 40
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_UNITS |= {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
_QUOTA_RE = re.compile(r"^([0-9]+)\s*([kKmMgGtT]i?)?[bB]?$")
_MAILBOX_LOCAL_RE = re.compile(rf"^{MAILBOX_LOCAL_PATTERN}$")


class InputError(ValueError):
    """One field's input refused; the message says what to do."""


def take(form: Form, name: str, check: Callable[..., T], *args: Any) -> T | None:
    """`check(*args)`, or None with its message recorded next to field `name`."""
    try:
        return check(*args)
    except InputError as e:
        form.error(name, str(e))
        return None


# -- the plan's limits ---------------------------------------------------------------

_PLAN_DEFAULTS = MailPlanSpec.model_fields


def plan_limit(plan: JSON, key: str) -> int:
    """A limit of the plan (its wire name, e.g. maxDomains), the model's default when unset."""
    if key in plan:
        return int(plan[key])
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()
    return int(_PLAN_DEFAULTS[snake].default)


def plan_name(plan: JSON, spec: JSON) -> str:
    return str(plan.get("displayName") or spec.get("plan") or "your plan")


def within_limit(count: int, plan: JSON, spec: JSON, key: str, what: str) -> None:
    """InputError when one more `what` would exceed the plan's `key` limit."""
    limit = plan_limit(plan, key)
    if count >= limit:
        raise InputError(
            f"Your plan ({plan_name(plan, spec)}) allows {limit} {what} and this server "
            f"has {count}. Remove one first, or change to a larger plan under Plan and billing."
        )


# -- domains -------------------------------------------------------------------------


def domain_name(raw: str) -> str:
    """The domain as the spec holds it: lowercase, IDNA-encoded (xn--), no trailing dot."""
    text = raw.strip().rstrip(".")
    if not text:
        raise InputError("Enter a domain name, like example.org.")
    if len(text) > MAX_DOMAIN:
        raise InputError(f"A domain name has at most {MAX_DOMAIN} characters.")
    if "@" in text:
        raise InputError("Enter only the domain, the part after the @ (like example.org).")
    try:
        encoded = idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError) as e:
        raise InputError(
            f"This is not a valid domain name ({e}). Check it for typing errors."
        ) from e
    if len(encoded) > MAX_DOMAIN:
        raise InputError(f"A domain name has at most {MAX_DOMAIN} characters (once encoded).")
    if not re.match(DOMAIN_PATTERN, encoded):
        raise InputError(
            "Enter the whole domain name with its ending, like example.org "
            "(letters, digits and hyphens between the dots)."
        )
    return encoded


def shown_domain(domain: str) -> str:
    """The domain as a person reads it (Unicode), the stored form when it is not IDNA."""
    try:
        return idna.decode(domain)
    except (idna.IDNAError, UnicodeError):
        return domain


def new_domain(raw: str, spec: JSON, plan: JSON) -> str:
    domain = domain_name(raw)
    if domain in (spec.get("domains") or []):
        raise InputError(f"{shown_domain(domain)} is already one of this server's domains.")
    within_limit(len(spec.get("domains") or []), plan, spec, "maxDomains", "domains")
    return domain


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


# -- mailboxes -----------------------------------------------------------------------


def mailbox_local(raw: str) -> str:
    local = raw.strip().lower()
    if not local:
        raise InputError("Enter the part of the address before the @, like alice.")
    if "@" in local:
        raise InputError("Enter only the part before the @; choose the domain below.")
    if len(local) > MAX_LOCAL:
        raise InputError(f"The part before the @ has at most {MAX_LOCAL} characters.")
    if not _MAILBOX_LOCAL_RE.match(local):
        raise InputError(
            "Use lowercase letters and digits, with single '.', '_' or '-' between them "
            "(like alice or alice.smith)."
        )
    return local


def server_domain(raw: str, spec: JSON) -> str:
    domain = raw.strip().lower()
    if domain not in (spec.get("domains") or []):
        raise InputError("Choose one of this server's domains.")
    return domain


def display_name(raw: str) -> str | None:
    name = raw.strip()
    if len(name) > MAX_DISPLAY_NAME:
        raise InputError(f"A name has at most {MAX_DISPLAY_NAME} characters.")
    return name or None


def quota(raw: str) -> str | None:
    """A quota as the spec holds it (e.g. "2Gi"); None when empty (the plan's default)."""
    text = raw.strip()
    if not text:
        return None
    m = _QUOTA_RE.match(text)
    if not m:
        raise InputError("Enter a size like 500Mi, 2Gi or 1Ti, or leave it empty.")
    unit = m.group(2) or ""
    unit = unit[0].upper() + unit[1:] if unit else ""
    unit = "k" if unit == "K" else unit
    size = int(m.group(1)) * _UNITS[unit]
    if not MIN_QUOTA <= size <= MAX_QUOTA:
        raise InputError("A quota must be between 1Mi (one mebibyte) and 16Ti.")
    return f"{m.group(1)}{unit}"


def quota_bytes(value: str) -> int:
    m = _QUOTA_RE.match(value)
    if not m:
        return 0
    unit = m.group(2) or ""
    return int(m.group(1)) * _UNITS.get(unit, 1)


# -- the API server's refusals -------------------------------------------------------


def field_for(path: str, fields: dict[str, str], default: str) -> str:
    """The form field a cause's path (e.g. "spec.mailboxes[2].quota") belongs to: the
    last name of the path that `fields` knows, else `default`."""
    names = [re.sub(r"\[.*?\]", "", part) for part in path.split(".")]
    for name in reversed(names):
        if name in fields:
            return fields[name]
    return default


def apply_causes(
    form: Form, message: str, causes: list[tuple[str, str]], fields: dict[str, str], default: str
) -> None:
    """Each refusal next to its field (unknown paths: next to `default`)."""
    if not causes:
        form.error(default, message)
    for path, text in causes:
        form.error(field_for(path, fields, default), text or message)
