"""The SMTP prober of bench/fleet.py's real part: one thread per server connects to
its Service's port 25 every 100 ms. An attempt is down when the connection is refused
or reset, or no reply line arrives within the timeout (a Service with no ready
endpoint refuses; a stopping Postfix resets or stays silent); any reply counts as up.
Replies other than a 220 banner are counted apart: a tenant's Postfix answers 421
past 60 connections a minute from one client outside the edge's networks (the dev
chart's edge networks are the node's pod range, in which the host's address on the
pod bridge lies), so they show if the prober's own rate was refused. The result per
server: the longest window down (from the first failing attempt's start to the next
good attempt's start), the attempts, the failures and the other replies."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from vpes_operator.fleet.probe import read_line

from bench.fleet_watch import Key
from tests.integration.operator_support import wait_for


@dataclass
class Window:
    """One server's record while the prober ran."""

    longest_s: float = 0.0
    attempts: int = 0
    failures: int = 0
    other_replies: int = 0  # up, but not a 220 banner (e.g. 421: too many connections)
    last_reply: str = ""
    down: bool = False  # the last attempt failed
    open_at_end: bool = False  # still down when the prober stopped
    last_error: str = ""


def smtp_attempt(host: str, port: int, timeout: float) -> tuple[str | None, str]:
    """(why the port is down or None, the reply line) of one connection."""
    try:
        line = read_line(host, port, timeout)
    except OSError as e:
        return str(e) or type(e).__name__, ""
    return (None, line) if line else ("closed without a reply", "")


class Prober:
    """`with Prober(hosts):` probes every server's SMTP port until the block ends."""

    def __init__(
        self, hosts: dict[Key, str], interval: float = 0.1, timeout: float = 1.0, port: int = 25
    ):
        self.hosts = hosts
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self.stop = threading.Event()
        self.windows = {key: Window() for key in hosts}
        self.threads = [
            threading.Thread(target=self._probe, args=(key,), daemon=True) for key in hosts
        ]

    def __enter__(self) -> Prober:
        for t in self.threads:
            t.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def _probe(self, key: Key) -> None:
        w, host = self.windows[key], self.hosts[key]
        down_since: float | None = None
        while not self.stop.is_set():
            t = time.monotonic()
            why, reply = smtp_attempt(host, self.port, self.timeout)
            w.attempts += 1
            if why is None and not reply.startswith("220"):
                w.other_replies += 1
                w.last_reply = reply[:60]
            w.down = why is not None
            if why is None:
                if down_since is not None:
                    w.longest_s = max(w.longest_s, t - down_since)
                down_since = None
            else:
                w.failures += 1
                w.last_error = why
                down_since = t if down_since is None else down_since
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - t)))
        if down_since is not None:
            w.longest_s = max(w.longest_s, time.monotonic() - down_since)
            w.open_at_end = True

    def wait_up(self, timeout: float = 60) -> None:
        """Until every server answered since its last failure: a pod turns Ready a
        moment before kube-proxy routes its Service to it, so a window may still be
        open when the pods are all Ready."""
        wait_for(
            lambda: not any(w.down for w in self.windows.values()), "SMTP on every server", timeout
        )

    def report(self) -> dict[str, Any]:
        """Max and median over the servers of their longest window down."""
        longest = [w.longest_s for w in self.windows.values()]
        return {
            "max_window_s": round(max(longest), 2),
            "median_window_s": round(statistics.median(longest), 2),
            "attempts": sum(w.attempts for w in self.windows.values()),
            "failures": sum(w.failures for w in self.windows.values()),
            "other_replies": sum(w.other_replies for w in self.windows.values()),
            "still_down_at_end": [
                f"{ns}/{name}" for (ns, name), w in self.windows.items() if w.open_at_end
            ],
            "per_server": {
                f"{ns}/{name}": {
                    "longest_s": round(w.longest_s, 2),
                    "failures": w.failures,
                    "last_error": w.last_error,
                    "other_replies": w.other_replies,
                    "last_other_reply": w.last_reply,
                }
                for (ns, name), w in self.windows.items()
            },
        }
