"""How often one client address may start a signup: a token bucket per address.

Each signup that reaches Stripe costs a Checkout session and an API call, so one
address may start `burst` signups at once and then one every `every` seconds.
The table is bounded: past `max_clients` addresses the least recently seen are
forgotten (they start again with a full bucket). Kept in memory, per replica:
written here because a few lines do it and no dependency is needed.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimit:
    def __init__(
        self,
        burst: int,
        every: float,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.every = every
        self.max_clients = max_clients
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def allow(self, client: str) -> float:
        """0 when `client` may go on (and a token is taken), else seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) / self.every)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) * self.every
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait
