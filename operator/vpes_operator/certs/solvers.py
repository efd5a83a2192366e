"""Challenge solvers: how the operator proves to the CA that it controls a name.

`ChallengeSolver` is the interface the issuer drives: present the answers of
a batch of challenges, wait until the CA can see them, clean up. DNS-01 is
one implementation, over any of vpes's DNS providers (the RFC 2136 one in
practice): the `_acme-challenge.<name>` TXT records are published with the
provider's ownership rules (only values the operator added are ever removed)
and awaited at the zone's authoritative source. HTTP-01 (served by vpes-web
at the edge) is another solver of the same interface (`http01.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from acme import challenges, messages
from josepy.jwk import JWK

from ..dns.errors import DNSError
from ..dns.ownership import Owned
from ..dns.providers import rfc2136
from ..dns.providers.base import Provider
from ..dns.records import Record
from .errors import ChallengeFailedError

log = logging.getLogger(__name__)

DNS01 = "dns-01"
# Short: a failed or repeated validation must not be cached for long anywhere.
CHALLENGE_TTL = 60
# The record kind the TXT records carry (the DNS modules' `Record.kind`).
KIND = "acme-challenge"


@dataclass(frozen=True)
class Task:
    """One challenge to answer: the name it proves, and the CA's challenge."""

    name: str
    challb: messages.ChallengeBody


class Answers(Protocol):
    """The answers one solver put out for one order."""

    def wait_ready(self, timeout: float) -> None:
        """Return once the CA can see every answer; ChallengeFailedError after `timeout`."""
        ...

    def cleanup(self) -> list[str]:
        """Take the answers away again; what could not be removed, in words."""
        ...


class ChallengeSolver(Protocol):
    """Answers challenges of one type (`challenge_type`, e.g. "dns-01").

    A solver keeps no state of its own: each order's answers are the `Answers`
    that `present` returns, so one solver serves concurrent orders.
    """

    @property
    def challenge_type(self) -> str: ...

    def present(self, tasks: Sequence[Task], key: JWK) -> Answers:
        """Put the answers where the CA looks; ChallengeFailedError (with nothing left
        behind) when it cannot."""
        ...


# Reads the TXT values at a name from the zone's authoritative source.
TXTLookup = Callable[[str], frozenset[str]]


@dataclass
class DNS01Answers:
    """The TXT records one order published: what is owned, and which values are awaited."""

    provider: Provider
    lookup: TXTLookup
    owned: Owned
    expected: dict[str, set[str]]
    poll_interval: float = 0.5

    def missing(self) -> list[str]:
        """The challenge names whose TXT records the zone's servers do not answer yet."""
        out = []
        for name, values in sorted(self.expected.items()):
            try:
                seen = self.lookup(name)
            except DNSError as e:
                log.info("dns-01: TXT %s cannot be read yet: %s", name, e.message)
                seen = frozenset()
            if not values <= seen:
                out.append(name)
        return out

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while missing := self.missing():
            if time.monotonic() >= deadline:
                raise ChallengeFailedError(
                    f"dns-01: the zone's server still does not answer the TXT record(s) "
                    f"{', '.join(missing)} {timeout:g} s after they were published: check "
                    "that the DNS provider's zone is the one the world sees"
                )
            time.sleep(self.poll_interval)

    def cleanup(self) -> list[str]:
        if not self.owned:
            return []
        result = self.provider.remove(self.owned)
        self.owned = result.owned
        return [p.message for p in result.problems]


@dataclass(frozen=True)
class DNS01Solver:
    """DNS-01 through a DNS provider; `lookup` reads what the zone's servers answer."""

    provider: Provider
    lookup: TXTLookup
    poll_interval: float = 0.5
    challenge_type: str = DNS01

    def present(self, tasks: Sequence[Task], key: JWK) -> DNS01Answers:
        records = []
        expected: dict[str, set[str]] = {}
        for task in tasks:
            chall = task.challb.chall
            if not isinstance(chall, challenges.DNS01):
                raise TypeError(f"{self.challenge_type} cannot answer {chall.typ}")
            txt_name = chall.validation_domain_name(task.name)
            value = chall.validation(key)
            expected.setdefault(txt_name, set()).add(value)
            records.append(Record(task.name, KIND, "TXT", txt_name, value, CHALLENGE_TTL))
        result = self.provider.publish(records, Owned(provider=self.provider.name))
        answers = DNS01Answers(
            self.provider, self.lookup, result.owned, expected, self.poll_interval
        )
        if result.problems:
            failed = [n for n in sorted(expected) if (n, "TXT") not in result.owned.rrsets]
            for left in answers.cleanup():
                log.warning("dns-01: a TXT record could not be removed: %s", left)
            detail = "; ".join(p.message for p in result.problems)
            raise ChallengeFailedError(
                f"dns-01: the TXT record {' and '.join(failed) or 'of a challenge'} could not be "
                f"published through the {self.provider.name} DNS provider: {detail}"
            )
        return answers


def rfc2136_solver(
    server: str, key: rfc2136.TSIGKey | None, timeout: float, poll_interval: float = 0.5
) -> DNS01Solver:
    """DNS-01 through RFC 2136, checked by asking the primary itself (non-recursively)."""
    store = rfc2136.RFC2136Store(server, key, timeout)

    def lookup(name: str) -> frozenset[str]:
        return store.read(name, name, "TXT").values

    return DNS01Solver(rfc2136.provider(server, key, timeout), lookup, poll_interval)
