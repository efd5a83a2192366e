"""The hosted domains' web names certified through cert-manager (see `webcerts.py`).

Like the edge's maps, this loop reacts to the servers the watches deliver
(`watched.EDGE`: a domain added, moved or dropped, a server deleted) after a short
debounce, and passes again every `certificates_poll_seconds` to read the
Certificates' status. The first pass waits until the whole fleet is delivered: a
pass on a partial view would delete the certificates of the part not yet seen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .. import watched
from ..clients.kube import ApiError
from ..webcerts import Publisher
from .background import background
from .edge import wait_for_fleet
from .events import post

log = logging.getLogger(__name__)

DEBOUNCE = 1.0
POLL = 0.2
RETRY = 10.0


async def keep_current(memo: Any) -> None:
    publisher = Publisher(memo.kube, memo.settings, post)
    await wait_for_fleet(memo.kube, "certificates")
    every = memo.settings.certificates_poll_seconds
    seen, due = -1, 0.0
    while True:
        if watched.EDGE.version != seen or time.monotonic() >= due:
            await asyncio.sleep(DEBOUNCE)
            seen = watched.EDGE.version
            try:
                await asyncio.to_thread(publisher.publish, watched.EDGE.values())
                due = time.monotonic() + every
            except ApiError as e:
                log.warning("certificates: a pass failed, again in %.0fs: %s", RETRY, e)
                due = time.monotonic() + RETRY
            except Exception:
                log.exception("certificates: a pass failed; again in %.0fs", RETRY)
                due = time.monotonic() + RETRY
        await asyncio.sleep(POLL)


background("certificates", keep_current)
