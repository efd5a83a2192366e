"""`vpes-panel`: run the customer panel (uvicorn).

Logging is configured here (billing's filter, which redacts tokens), not by
uvicorn; form bodies, where passwords travel, are never logged.

With `--internal-port`, a second listener in the same process serves the
webmail's password change (webmail_password) and nothing else; the chart keeps
it off the Ingress and admits only the webmail's pods to it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import uvicorn
from vpes_billing import logsafe
from vpes_operator.clients.kube import Kube

from .app import build_apps
from .settings import Settings


async def serve(servers: list[uvicorn.Server]) -> None:
    """Run every server until one stops (a signal, or a failure), then stop the rest."""
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for s in servers:
        s.should_exit = True
    await asyncio.gather(*tasks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vpes-panel", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--internal-port",
        type=int,
        default=0,
        help="serve the webmail's password change on this port (0: not at all)",
    )
    args = parser.parse_args(argv)
    if args.internal_port and args.internal_port == args.port:
        parser.error("--internal-port must differ from --port")
    logsafe.configure(logging.INFO)
    settings = Settings.from_env()
    public, internal = build_apps(settings, Kube.connect(field_manager="vpes-panel"))
    configs = [
        uvicorn.Config(
            public,
            host=args.host,
            port=args.port,
            proxy_headers=True,
            log_config=None,
            access_log=True,
        )
    ]
    if args.internal_port:
        # No proxy headers: the client counted is the peer itself (a webmail pod).
        configs.append(
            uvicorn.Config(
                internal,
                host=args.host,
                port=args.internal_port,
                proxy_headers=False,
                log_config=None,
                access_log=True,
            )
        )
    run(configs)


def run(configs: list[uvicorn.Config]) -> None:
    asyncio.run(serve([uvicorn.Server(c) for c in configs]))


if __name__ == "__main__":
    main()
