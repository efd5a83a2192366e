"""When each server's DNS is checked next: re-verification backs off.

A check runs soon after a failure (the interval doubling up to a maximum), and
rarely once everything passes; a new generation of the spec is checked at once,
and so is a server whose `vpes.io/check-dns` annotation has a value not acted
on yet (the panel's "Check again": `kubectl annotate pms <name>
vpes.io/check-dns=$(date +%s) --overwrite` does the same).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .. import naming
from ..settings import OperatorSettings

CHECK_ANNOTATION = f"{naming.PREFIX}/check-dns"


@dataclass
class Due:
    at: float
    interval: float
    generation: int
    # The check-dns annotation's value when the last run began (None: there was none).
    token: str | None = None
    # The server's plan-revision annotation then: a changed plan (calendar on or off
    # changes the records) is checked at once, like a new generation.
    plan: str | None = None


class Schedule:
    """When each server's next check is due (in memory: a restart checks everything once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[str, Due] = {}
        self._runs: dict[str, threading.Lock] = {}
        self._gone: set[str] = set()

    def run_lock(self, uid: str) -> threading.Lock:
        """Held while a server's DNS is worked on: a cleanup waits for a running publish."""
        with self._lock:
            return self._runs.setdefault(uid, threading.Lock())

    def gone(self, uid: str) -> bool:
        with self._lock:
            return uid in self._gone

    def is_due(
        self,
        uid: str,
        generation: int,
        now: float,
        token: str | None = None,
        plan: str | None = None,
    ) -> bool:
        """`token`: the server's check-dns annotation; a new value asks for a check now.
        `plan`: its plan-revision annotation; a new value (its plan changed) likewise."""
        with self._lock:
            d = self._due.get(uid)
            if d is None or d.generation != generation or d.plan != plan or now >= d.at:
                return True
            return token is not None and token != d.token

    def done(
        self,
        uid: str,
        generation: int,
        ok: bool,
        settings: OperatorSettings,
        now: float,
        *,
        soon: bool = False,
        token: str | None = None,
        plan: str | None = None,
    ) -> float:
        """Record a run; the seconds until the next (`soon`: at the next tick). `token`:
        the check-dns annotation the run began with (acted on: not due again for it);
        `plan`: the plan-revision annotation it began with."""
        with self._lock:
            old = self._due.get(uid)
            if soon:
                interval = 0.0
            elif ok:
                interval = settings.dns_verify_ok_interval
            elif (
                old is None
                or old.generation != generation
                or old.plan != plan
                or old.interval >= settings.dns_verify_ok_interval
            ):
                interval = settings.dns_verify_min_interval
            else:
                interval = max(
                    settings.dns_verify_min_interval,
                    min(old.interval * 2, settings.dns_verify_max_interval),
                )
            self._due[uid] = Due(now + interval, interval, generation, token, plan)
            return interval

    def forget(self, uid: str) -> None:
        """The server is being deleted: no more runs for it."""
        with self._lock:
            self._due.pop(uid, None)
            self._gone.add(uid)
