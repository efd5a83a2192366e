"""DNS handlers on PersonalMailServers: publish and verify; re-check on a timer; clean up.

Re-verification backs off: a kopf timer ticks for every server, and a check
runs only when it is due: soon after a failure (doubling up to a maximum),
rarely once everything passes. A DNS fault is a condition, never a crash loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import kopf

from .. import GROUP, VERSION, metrics
from ..dns import service
from ..settings import OperatorSettings
from .events import post

PLURAL = "personalmailservers"
# The tick is read once, at import: kopf fixes a timer's interval when it registers it.
TICK = OperatorSettings.from_env().dns_verify_tick


@dataclass
class Due:
    at: float
    interval: float
    generation: int


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

    def is_due(self, uid: str, generation: int, now: float) -> bool:
        with self._lock:
            d = self._due.get(uid)
            return d is None or d.generation != generation or now >= d.at

    def done(
        self,
        uid: str,
        generation: int,
        ok: bool,
        settings: OperatorSettings,
        now: float,
        *,
        soon: bool = False,
    ) -> float:
        """Record a run; the seconds until the next (`soon`: at the next tick)."""
        with self._lock:
            old = self._due.get(uid)
            if soon:
                interval = 0.0
            elif ok:
                interval = settings.dns_verify_ok_interval
            elif (
                old is None
                or old.generation != generation
                or old.interval >= settings.dns_verify_ok_interval
            ):
                interval = settings.dns_verify_min_interval
            else:
                interval = max(
                    settings.dns_verify_min_interval,
                    min(old.interval * 2, settings.dns_verify_max_interval),
                )
            self._due[uid] = Due(now + interval, interval, generation)
            return interval

    def forget(self, uid: str) -> None:
        """The server is being deleted: no more runs for it."""
        with self._lock:
            self._due.pop(uid, None)
            self._gone.add(uid)


SCHEDULE = Schedule()


def _run(body: dict[str, Any], memo: Any) -> service.Outcome:
    meta = body["metadata"]
    with SCHEDULE.run_lock(meta["uid"]):
        if SCHEDULE.gone(meta["uid"]) or meta.get("deletionTimestamp"):
            return service.Outcome()
        outcome = service.run(memo.kube, memo.settings, body)
    if outcome.failures:
        metrics.DNS_VERIFICATION_FAILURES.labels(meta["namespace"], meta["name"]).inc(
            outcome.failures
        )
    SCHEDULE.done(
        meta["uid"],
        int(meta.get("generation", 1)),
        outcome.verified,
        memo.settings,
        time.monotonic(),
        soon=outcome.waiting is not None,
    )
    return outcome


# Publishing and checking run from the timer alone, not as create/update
# handlers: the server's own reconcile is then the only handler of those
# causes, and an operator killed between two handlers of one cause cannot leave
# the reconcile (which also refreshes readiness) undone after a restart. The
# first tick comes at once for a new server (and for every server at start-up);
# a spec change is noticed by its generation at the next tick.
@kopf.timer(GROUP, VERSION, PLURAL, id="dns", interval=TICK)
async def dns_timer(
    body: kopf.Body, meta: kopf.Meta, memo: Any, logger: kopf.Logger, **_: Any
) -> None:
    uid = str(meta.get("uid"))
    generation = int(meta.get("generation", 1))
    if not SCHEDULE.is_due(uid, generation, time.monotonic()):
        return  # the common case: no thread, no API call
    try:
        outcome = await asyncio.to_thread(_run, dict(body), memo)
    except Exception:  # a check never crashes the operator; it is retried with back-off
        logger.exception("DNS of %s failed", meta.get("name"))
        SCHEDULE.done(uid, generation, False, memo.settings, time.monotonic())
        return
    post(body, outcome.events)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="dns-cleanup", retries=20)
def dns_cleanup(
    body: kopf.Body, meta: kopf.Meta, memo: Any, retry: int, logger: kopf.Logger, **_: Any
) -> None:
    """Remove the records the server published (its finalizer holds the deletion until then)."""
    uid = str(meta.get("uid"))
    SCHEDULE.forget(uid)
    # The server's series goes with it: a deleted tenant is not a failing one.
    metrics.DNS_VERIFICATION_FAILURES.remove(str(meta.get("namespace")), str(meta.get("name")))
    with SCHEDULE.run_lock(uid):  # a publish still running finishes first
        problems = service.cleanup(memo.kube, memo.settings, dict(body))
    if not problems:
        return
    text = "; ".join(p.message for p in problems)
    if retry >= 19:
        logger.error("giving up removing the DNS records of %s: %s", meta.get("name"), text)
        kopf.warn(body, reason="DNSCleanupFailed", message=f"records left in DNS: {text}")
        return
    raise kopf.TemporaryError(f"DNS records not removed yet: {text}", delay=min(5 * 2**retry, 300))
