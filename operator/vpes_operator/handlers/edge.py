"""The shared edge's maps, kept current from start-up to cleanup (see `edgemaps.py`).

No handler of its own reacts to a change: the watch events already keep every
server and plan in `watched` (`observe.py`); this loop notices that the stores
changed, waits a moment for more changes (one rebuild for a burst), and
publishes. It also publishes every RESYNC seconds, so a ConfigMap edited or
deleted by hand is put back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .. import health, watched
from ..clients.kube import ApiError, Kube
from ..edgemaps import Publisher, undelivered
from .background import background
from .events import post

log = logging.getLogger(__name__)

DEBOUNCE = 1.0  # seconds from a change to the rebuild: a burst of changes is one rebuild
POLL = 0.2  # how often the stores are looked at for a change
RETRY = 5.0  # after a failed pass
RESYNC = 300.0


def changes() -> int:
    return watched.EDGE.version + watched.PLANS.version + watched.RELAY.version


async def wait_for_fleet(kube: Kube, what: str = "edge maps") -> None:
    """Until the watches have delivered every server and plan the API has: maps built
    from part of the fleet would refuse the other part's mail (and certificates swept
    on a partial view would delete those of the other part)."""
    logged = False
    while True:
        try:
            missing = await asyncio.to_thread(
                undelivered,
                kube,
                watched.EDGE.groups(),
                watched.PLANS.groups(),
                health.HEALTH.namespaces,
            )
        except Exception as e:
            missing = -1
            log.warning("%s: listing the servers failed: %s", what, e)
        if missing == 0:
            return
        if not logged and missing > 0:
            log.info("%s: waiting for %d servers and plans to be delivered", what, missing)
            logged = True
        await asyncio.sleep(1.0)


async def keep_current(memo: Any) -> None:
    publisher = Publisher(memo.kube, memo.settings, post, relay=watched.RELAY)
    await wait_for_fleet(publisher.kube)
    seen, due = -1, 0.0
    while True:
        if changes() != seen or time.monotonic() >= due:
            await asyncio.sleep(DEBOUNCE)
            seen = changes()
            plans = dict(watched.PLANS.items())
            try:
                await asyncio.to_thread(
                    publisher.publish,
                    watched.EDGE.values(),
                    {name: specs[0] for name, specs in plans.items() if specs},
                )
                due = time.monotonic() + RESYNC
            except ApiError as e:  # refused or unreachable: no traceback every few seconds
                log.warning("publishing the edge's maps failed, again in %.0fs: %s", RETRY, e)
                due = time.monotonic() + RETRY
            except Exception:
                log.exception("publishing the edge's maps failed; again in %.0fs", RETRY)
                due = time.monotonic() + RETRY
        await asyncio.sleep(POLL)


background("edge_maps", keep_current)
