"""`vpes-panel`: run the customer panel (uvicorn).

Logging is configured here (billing's filter, which redacts tokens), not by
uvicorn; form bodies, where passwords travel, are never logged.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn
from vpes_billing import logsafe
from vpes_operator.clients.kube import Kube

from .app import build_app
from .settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vpes-panel", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logsafe.configure(logging.INFO)
    settings = Settings.from_env()
    app = build_app(settings, Kube.connect(field_manager="vpes-panel"))
    uvicorn.run(
        app, host=args.host, port=args.port, proxy_headers=True, log_config=None, access_log=True
    )


if __name__ == "__main__":
    main()
