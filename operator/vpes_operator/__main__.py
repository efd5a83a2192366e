"""Run the operator: `python -m vpes_operator` (or the `vpes-operator` script)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import kopf

if TYPE_CHECKING:  # imported at run time only after kopf is configured
    from . import metrics
    from .leader import Elector

log = logging.getLogger("vpes_operator")
M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Keep glibc from giving each handler thread its own heap.

    With a thread pool, glibc's default of up to 8 arenas per core lets freed
    memory sit fragmented in many heaps: a burst of reconciles then leaves the
    operator's resident memory near its peak. Two arenas keep it compact.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="the vpes operator")
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); all when unset",
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="kopf's liveness endpoint URL; empty to disable",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env("VPES_METRICS_PORT", "9090")),
        help="port of /metrics and /readyz; 0 to disable",
    )
    parser.add_argument(
        "--log-format", choices=["plain", "json"], default=env("VPES_LOG_FORMAT", "plain")
    )
    parser.add_argument(
        "--leader-elect",
        action="store_true",
        default=env("VPES_LEADER_ELECT", "") == "true",
        help="reconcile only while holding the Lease (for several replicas)",
    )
    parser.add_argument("--lease-namespace", default=env("POD_NAMESPACE", "vpes-system"))
    parser.add_argument("--lease-name", default="vpes-operator")
    parser.add_argument(
        "--identity", default=env("POD_NAME", f"{socket.gethostname()}-{os.getpid()}")
    )
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=float(env("VPES_STALL_SECONDS", "300")),
        help="liveness fails when work has waited this long while no handler finished",
    )
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


class Heartbeat:
    """Liveness: the main loop beats (waiting for the Lease, then kopf's event loop).

    /healthz fails when it has not beaten for `max_age` seconds: the process is
    stuck and a restart helps. A standby replica is alive, not stuck.
    """

    def __init__(self, max_age: float = 60.0) -> None:
        self.max_age = max_age
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def healthy(self) -> bool:
        return time.monotonic() - self.last < self.max_age


async def run_kopf(
    args: argparse.Namespace, ready: threading.Event, stop: threading.Event, heartbeat: Heartbeat
) -> None:
    async def beat() -> None:
        while True:
            heartbeat.beat()
            await asyncio.sleep(min(5.0, heartbeat.max_age / 4))

    beating = asyncio.create_task(beat())
    try:
        await kopf.operator(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness or None,
            ready_flag=ready,
            stop_flag=stop,
        )
    finally:
        beating.cancel()
        stop.set()  # kopf stopped for its own reasons: so does whatever waits on `stop`


@dataclasses.dataclass
class Flags:
    """What the main thread, kopf, the metrics server and the lease keeper share."""

    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    ready: threading.Event = dataclasses.field(default_factory=threading.Event)
    standby: threading.Event = dataclasses.field(default_factory=threading.Event)
    heartbeat: Heartbeat = dataclasses.field(default_factory=Heartbeat)
    # kopf has stopped: nothing reconciles any more
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


@dataclasses.dataclass(frozen=True)
class HeldLease:
    """The Lease this replica leads with, and the thread that renews it."""

    elector: Elector
    keeper: threading.Thread


def register_stop_flag(stop: threading.Event) -> None:
    @kopf.on.cleanup(id="vpes-stop-flag")
    def stopping(**_: Any) -> None:
        # On SIGTERM kopf's own signal handler stops it, not `stop`: set it, or
        # kopf's task that waits for it keeps kopf from exiting for 5 more seconds.
        stop.set()


def handle_signals(stop: threading.Event) -> None:
    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def start_metrics(port: int, flags: Flags) -> metrics.Server:
    from . import metrics
    from .health import HEALTH

    server = metrics.Server(
        port,
        # A standby replica is ready to take over; a leader once it processes.
        ready=lambda: flags.standby.is_set() or (flags.ready.is_set() and HEALTH.ready()),
        healthy=lambda: flags.heartbeat.healthy() and HEALTH.alive(),
        explain=lambda: (
            "standing by for the Lease" if flags.standby.is_set() else HEALTH.verdict().why
        ),
    )
    server.start()
    return server


def exit_on_lost_lease() -> None:
    # Stop at once: another replica may lead as soon as the lease expires.
    log.error("leadership lost: exiting so that only one replica reconciles")
    logging.shutdown()
    os._exit(70)


def take_lease(args: argparse.Namespace, flags: Flags) -> HeldLease:
    """Stand by until this replica leads, then keep the Lease renewed; exit if stopped first."""
    from .clients.kube import Kube
    from .leader import Elector, LeaseConfig

    cfg = LeaseConfig(args.lease_namespace, args.lease_name, args.identity)
    elector = Elector(Kube.connect(field_manager="vpes-operator-leader"), cfg)
    flags.standby.set()
    leading = elector.wait_for_leadership(flags.stop, beat=flags.heartbeat.beat)
    flags.standby.clear()
    if not leading:  # stopped while standing by
        sys.exit(0)
    # Renewed until kopf has stopped, not merely been asked to.
    keeper = threading.Thread(
        target=elector.keep, args=(flags.done, exit_on_lost_lease), daemon=True, name="lease"
    )
    keeper.start()
    return HeldLease(elector, keeper)


def wind_down(flags: Flags, lease: HeldLease | None, server: metrics.Server | None) -> None:
    # kopf's loop took over the signals, and its handlers are gone with it: a
    # second signal must not kill us before the lease is given back.
    handle_signals(flags.stop)
    flags.stop.set()
    flags.done.set()
    if lease is not None:
        lease.keeper.join(timeout=lease.elector.cfg.renew_every + 30)
        # Only now that nothing reconciles: another replica may lead at once.
        lease.elector.release()
    if server is not None:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    limit_malloc_arenas()
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    from . import handlers, metrics  # noqa: F401  (importing handlers registers them)
    from .health import HEALTH

    HEALTH.stall_after = args.stall_seconds
    HEALTH.namespaces = tuple(args.namespace)

    flags = Flags()
    register_stop_flag(flags.stop)
    handle_signals(flags.stop)
    server = start_metrics(args.metrics_port, flags) if args.metrics_port else None
    lease = take_lease(args, flags) if args.leader_elect else None
    try:
        asyncio.run(run_kopf(args, flags.ready, flags.stop, flags.heartbeat))
    finally:
        wind_down(flags, lease, server)
    sys.exit(0)


if __name__ == "__main__":
    main()
