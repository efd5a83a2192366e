"""Run the operator: `python -m vpes_operator` (or the `vpes-operator` script)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading

import kopf

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
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    limit_malloc_arenas()
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    from . import handlers, metrics  # noqa: F401  (importing handlers registers them)
    from .clients.kube import Kube
    from .leader import Elector, LeaseConfig

    stop = threading.Event()
    ready = threading.Event()
    standby = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = None
    if args.metrics_port:
        server = metrics.Server(args.metrics_port, ready=lambda: ready.is_set() or standby.is_set())
        server.start()

    if args.leader_elect:
        cfg = LeaseConfig(args.lease_namespace, args.lease_name, args.identity)
        elector = Elector(Kube.connect(field_manager="vpes-operator-leader"), cfg)
        standby.set()
        if not elector.wait_for_leadership(stop):
            return
        standby.clear()

        def lost() -> None:
            # Stop at once: another replica may lead as soon as the lease expires.
            log.error("leadership lost: exiting so that only one replica reconciles")
            logging.shutdown()
            os._exit(70)

        threading.Thread(target=elector.keep, args=(stop, lost), daemon=True, name="lease").start()

    try:
        asyncio.run(
            kopf.operator(
                standalone=True,
                clusterwide=not args.namespace,
                namespaces=args.namespace,
                liveness_endpoint=args.liveness or None,
                ready_flag=ready,
                stop_flag=stop,
            )
        )
    finally:
        if server is not None:
            server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
