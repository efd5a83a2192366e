"""`vpes-web`: serve the client set-up endpoints (uvicorn).

The access log keeps each request's path but never its query: a client's mail
address travels there (`?emailaddress=`); nor, under /dav/, more than "/dav/": the
calendar clients' paths start with the login's address.
"""

from __future__ import annotations

import argparse
import logging
import threading

import uvicorn
from vpes_billing import logsafe
from vpes_operator.clients.kube import Kube

from .acme import watch_answers
from .app import build_app
from .dav_address import PREFIX
from .hosted import watch_hosted
from .settings import WebSettings


class DropQuery(logging.Filter):
    """uvicorn's access record (client, method, path?query, version, status) without
    the query, and without what follows /dav/."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path = args[2].split("?", 1)[0]
            if path.startswith(PREFIX + "/"):
                path = PREFIX + "/"
            record.args = (args[0], args[1], path, args[3], args[4])
        return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vpes-web", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logsafe.configure(logging.INFO)
    logging.getLogger("uvicorn.access").addFilter(DropQuery())
    settings = WebSettings.from_env()
    kube = Kube.connect(field_manager="vpes-web")
    stop = threading.Event()
    hosted = watch_hosted(kube, stop, settings.hosted_settle_seconds)
    mail = settings.mail
    acme = watch_answers(kube, mail.operator_namespace, mail.acme_http01_configmap, stop)
    app = build_app(settings, hosted, acme=acme)
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            proxy_headers=True,
            log_config=None,
            access_log=True,
        )
    finally:
        stop.set()  # the watches end with the server, not with the process


if __name__ == "__main__":
    main()
