"""New passwords: long enough, not common or breached, hard to guess; then hashed.

Strength is zxcvbn's estimate (its score: 3 or more passes), told to the user
with zxcvbn's own warning and suggestions. The breached/common list is
zxcvbn's `passwords` frequency list (the 30,000 passwords most seen in public
breaches), checked exactly, case folded, so that "Password1" is refused with
that reason rather than only a low score. The password is hashed for Dovecot
(BLF-CRYPT) at once; it is never stored, logged or shown.
"""

from __future__ import annotations

from vpes_operator import crypto
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MIN_LENGTH, MAX_LENGTH = 12, 512
MIN_SCORE = 3
# zxcvbn's run time grows with the length; the rest of a long password adds nothing.
ZXCVBN_PREFIX = 100
_COMMON = frozenset(p.casefold() for p in FREQUENCY_LISTS["passwords"])


class WeakPasswordError(ValueError):
    """Why a password is refused and what would pass: for the person who chose it."""


def check(password: str, confirm: str, *, context: list[str]) -> None:
    """WeakPasswordError unless `password` may be used; `context` holds words the
    person's own details give away (their address, the domain)."""
    if password != confirm:
        raise WeakPasswordError("The two passwords differ. Type the same password twice.")
    if len(password) < MIN_LENGTH:
        raise WeakPasswordError(
            f"Use at least {MIN_LENGTH} characters (this one has {len(password)}). "
            "A few unrelated words make a long password that is easy to remember."
        )
    if len(password) > MAX_LENGTH:
        raise WeakPasswordError(f"Use at most {MAX_LENGTH} characters.")
    if password.casefold() in _COMMON:
        raise WeakPasswordError(
            "This password is on the list of passwords most used and leaked in breaches: "
            "attackers try it first. Choose another, e.g. three or four unrelated words."
        )
    result = zxcvbn(password[:ZXCVBN_PREFIX], user_inputs=context)
    if result["score"] < MIN_SCORE:
        feedback = result["feedback"]
        parts = [feedback.get("warning") or "This password is too easy to guess."]
        parts += list(feedback.get("suggestions") or [])
        parts.append("Add more unrelated words or characters until it passes.")
        raise WeakPasswordError(" ".join(p.rstrip(".") + "." for p in parts if p))


def context_words(address: str) -> list[str]:
    local, _, domain = address.partition("@")
    return [address, local, domain, *domain.split(".")]


def hashed(password: str, rounds: int) -> str:
    """The Dovecot hash the tenant checks logins against."""
    return crypto.hash_password(password, rounds)
