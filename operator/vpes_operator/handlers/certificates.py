"""The hosted domains' web names certified through cert-manager (see `webcerts.py`),
or, where cert-manager is not used and an ACME CA is configured, by the operator's
own ACME client (see `acmecerts.py`). The edge's mail names are certified by
whichever path is used: one Certificate of them under cert-manager (`edgecert.py`),
the ACME client's own order otherwise, into the same Secret.

Like the edge's maps, this loop reacts to the servers the watches deliver
(`watched.EDGE`: a domain added, moved or dropped, a server deleted) after a short
debounce, and passes again every `certificates_poll_seconds` to read the
certificates' state, and as soon as an ACME order ends. The first pass waits until
the whole fleet is delivered: a pass on a partial view would delete the certificates
of the part not yet seen. A pass runs in a thread; ACME orders in threads of their
own (`certs/orders.py`), never in the pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from .. import watched
from ..acmecerts import AcmePublisher, use_acme
from ..certreport import Reporter
from ..clients.kube import ApiError
from ..edgecert import EdgeCertificate
from ..models.server import PersonalMailServer
from ..webcerts import Publisher
from .background import background
from .edge import wait_for_fleet
from .events import post

log = logging.getLogger(__name__)

DEBOUNCE = 1.0
POLL = 0.2
RETRY = 10.0


class Certificates:
    """One pass through whichever path certifies: cert-manager's or our own client."""

    def __init__(self, memo: Any) -> None:
        self.settings = memo.settings
        report = Reporter(memo.kube, post)
        self.cert_manager = Publisher(memo.kube, memo.settings, post, report)
        self.edge = EdgeCertificate(memo.kube, memo.settings, post)
        self.acme = (
            AcmePublisher(memo.kube, memo.settings, report)
            if memo.settings.acme_directory_url
            else None
        )

    def publish(self, servers: Iterable[PersonalMailServer]) -> None:
        installed = self.cert_manager.cert_manager.installed
        if self.acme is not None and use_acme(self.settings, installed):
            self.cert_manager.release()  # Certificates left from before, if any
            self.edge.release(installed())
            self.acme.publish(servers)
        else:
            self.cert_manager.publish(servers)
            self.edge.publish(installed())

    def orders_ended(self) -> int:
        """Bumped whenever an ACME order ends (its Secret written or its failure kept)."""
        return self.acme.orders.version if self.acme is not None else 0

    def close(self) -> None:
        if self.acme is not None:
            self.acme.orders.shutdown()


async def keep_current(memo: Any) -> None:
    certs = Certificates(memo)
    try:
        await wait_for_fleet(memo.kube, "certificates")
        await passes(certs, memo.settings.certificates_poll_seconds)
    finally:
        certs.close()


async def passes(certs: Certificates, every: float) -> None:
    seen, ended, due = -1, -1, 0.0
    while True:
        fresh = watched.EDGE.version != seen or certs.orders_ended() != ended
        if fresh or time.monotonic() >= due:
            await asyncio.sleep(DEBOUNCE)
            seen, ended = watched.EDGE.version, certs.orders_ended()
            try:
                await asyncio.to_thread(certs.publish, watched.EDGE.values())
                due = time.monotonic() + every
            except ApiError as e:
                log.warning("certificates: a pass failed, again in %.0fs: %s", RETRY, e)
                due = time.monotonic() + RETRY
            except Exception:
                log.exception("certificates: a pass failed; again in %.0fs", RETRY)
                due = time.monotonic() + RETRY
        await asyncio.sleep(POLL)


background("certificates", keep_current)
