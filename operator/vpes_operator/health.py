"""What /readyz and /healthz answer, from what the operator really does.

Ready means the operator is watching, its watch has delivered every server the
API lists, and it is processing: a server handler has finished (with no server
at start-up there is nothing to wait for). Once ready, only a stall (below)
takes readiness back.

Alive means the event loop beats (see `__main__.Heartbeat`) and the operator
is not wedged: work is waiting (a server seen by the watch whose generation no
handler has taken since start-up) while no handler has finished for
`stall_after` seconds. Kubernetes then restarts it, and the gauges below let an
alert fire.

`assess` runs in kopf's event loop every few seconds over the server
generations the watch delivered (`watched.GENERATIONS`, including removals);
the probes only read its verdict, from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .metrics import (
    HANDLERS_IN_FLIGHT,
    HANDLERS_IN_FLIGHT_PEAK,
    OLDEST_WAIT,
    READY,
    STALLED,
    WAITING,
)

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    ready: bool
    alive: bool
    why: str  # for a person reading the probe's body or the log


class Health:
    """Progress of the operator's work; thread-safe."""

    def __init__(self, stall_after: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.stall_after = stall_after
        self.clock = clock
        self.namespaces: tuple[str, ...] = ()  # watched; all when empty
        self._lock = threading.Lock()
        self._started: float | None = None
        self._expected = 0
        self._handled: dict[str, int] = {}  # uid → the generation a handler last took
        self._handled_any = False
        self._was_ready = False  # ready once: then only a stall takes it back
        self._last_progress = 0.0
        self._waiting_since: dict[str, float] = {}
        self._in_flight = 0
        self._peak = 0
        self._verdict = Verdict(ready=False, alive=True, why="kopf has not started")

    # -- what the operator reports ---------------------------------------------------

    def started(self, expected_servers: int) -> None:
        """kopf has started; `expected_servers` existed when it did."""
        with self._lock:
            self._started = self._last_progress = self.clock()
            self._expected = expected_servers
            self._verdict = Verdict(False, True, "started; the watch is indexing the servers")

    def entered(self) -> None:
        """A server handler starts."""
        with self._lock:
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            HANDLERS_IN_FLIGHT.set(self._in_flight)
            HANDLERS_IN_FLIGHT_PEAK.set(self._peak)

    def handled(self, uid: str, generation: int) -> None:
        """A server handler finished (whatever its outcome) at this generation."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            HANDLERS_IN_FLIGHT.set(self._in_flight)
            if generation > self._handled.get(uid, -1):
                self._handled[uid] = generation
            self._handled_any = True
            self._last_progress = self.clock()

    def handled_generation(self, uid: str) -> int | None:
        with self._lock:
            return self._handled.get(uid)

    # -- the verdict -----------------------------------------------------------------

    def assess(self, generations: Iterable[tuple[str, int]], undelivered: int = 0) -> Verdict:
        """Judge from (uid, generation) of every server known to exist; `undelivered`
        of them the API lists but the watch has not delivered yet."""
        now = self.clock()
        with self._lock:
            seen: set[str] = set()
            for uid, generation in generations:
                seen.add(uid)
                if self._handled.get(uid, -1) < generation:
                    self._waiting_since.setdefault(uid, now)
                else:
                    self._waiting_since.pop(uid, None)
            for uid in set(self._waiting_since) - seen:  # gone from the cluster
                del self._waiting_since[uid]
            for uid in set(self._handled) - seen:
                del self._handled[uid]
            self._verdict = self._judge(now, len(seen), undelivered)
            verdict = self._verdict
            oldest = min(self._waiting_since.values(), default=now)
            WAITING.set(len(self._waiting_since))
            OLDEST_WAIT.set(now - oldest)
        STALLED.set(0.0 if verdict.alive else 1.0)
        READY.set(1.0 if verdict.ready else 0.0)
        return verdict

    def _judge(self, now: float, indexed: int, undelivered: int = 0) -> Verdict:
        if self._started is None:
            return Verdict(False, True, "kopf has not started")
        waiting = len(self._waiting_since)
        oldest = min(self._waiting_since.values(), default=now)
        idle = now - self._last_progress
        if waiting and now - oldest > self.stall_after and idle > self.stall_after:
            return Verdict(
                False,
                False,
                f"stalled: {waiting} servers have waited {now - oldest:.0f}s for a handler "
                f"and none finished for {idle:.0f}s",
            )
        if not self._was_ready and self._expected and not self._handled_any:
            return Verdict(
                False,
                True,
                f"starting: {self._expected} servers present at start-up, "
                "no handler has finished yet",
            )
        if not self._was_ready and undelivered:
            return Verdict(
                False,
                True,
                f"starting: the watch has not delivered {undelivered} of the {indexed} "
                "servers the API lists",
            )
        self._was_ready = True
        return Verdict(True, True, f"ok: {waiting} servers waiting")

    def verdict(self) -> Verdict:
        with self._lock:
            return self._verdict

    def ready(self) -> bool:
        return self.verdict().ready

    def alive(self) -> bool:
        return self.verdict().alive


HEALTH = Health()


def tracks(fn: F) -> F:
    """Decorate every change handler of servers: its end (success or not) is progress
    on that server. A server whose only pending handler is untracked would look stalled."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        HEALTH.entered()
        try:
            return fn(*args, **kwargs)
        finally:
            meta = kwargs["body"]["metadata"]
            HEALTH.handled(str(meta["uid"]), int(meta.get("generation") or 0))

    wrapper.tracked = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


class Delivered(Protocol):
    """What the watch delivered: (uid, [generation]) per server (`watched.GENERATIONS`)."""

    def items(self) -> list[tuple[str, list[int]]]: ...


def generations(index: Delivered) -> list[tuple[str, int]]:
    """(uid, generation) pairs of the servers the watch delivered."""
    return [(str(uid), max(store, default=0)) for uid, store in index.items()]


async def assess_forever(
    health: Health,
    index: Delivered,
    listed: Callable[[], list[tuple[str, int]]],
    every: float = 5.0,
    list_every: float = 30.0,
) -> None:
    """kopf's loop task: keep the verdict current (the probes only read it).

    The work to be done is what the watch delivered and, every
    `list_every` seconds, what the API itself lists: a server the watch never
    delivered (a stalled stream, a start-up that never indexes) still counts.
    The list runs on a thread of its own, so handlers filling kopf's pool
    cannot delay the verdict.
    """
    loop = asyncio.get_running_loop()
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="health")
    api_view: dict[str, int] = {}
    last_list = -list_every
    last_why = ""
    try:
        while True:
            if loop.time() - last_list >= list_every:
                try:
                    future = loop.run_in_executor(pool, listed)
                    api_view = dict(await asyncio.wait_for(future, timeout=list_every))
                    last_list = loop.time()
                except Exception as e:  # the API is unreachable: judge from the watch alone
                    log.info("listing the servers for the health check failed: %s", e)
            merged = dict(api_view)
            delivered = generations(index)
            for uid, generation in delivered:
                merged[uid] = max(merged.get(uid, 0), generation)
            undelivered = len(set(api_view) - {uid for uid, _ in delivered})
            verdict = health.assess(merged.items(), undelivered)
            if verdict.why != last_why and not verdict.ready:
                log.warning("%s", verdict.why)
            last_why = verdict.why
            await asyncio.sleep(every)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
