"""Run the operator: `python -m vpes_operator` (or the `vpes-operator` script)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging

import kopf

M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Keep glibc from giving each handler thread its own heap.

    With a thread pool, glibc's default of up to 8 arenas per core lets freed
    memory sit fragmented in many heaps: a burst of reconciles then leaves the
    operator's resident memory near its peak. Two arenas keep it compact.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)


def main(argv: list[str] | None = None) -> None:
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
        help="liveness endpoint URL; empty to disable",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    limit_malloc_arenas()
    from . import handlers  # noqa: F401  (registers the handlers)

    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness or None,
        )
    )


if __name__ == "__main__":
    main()
