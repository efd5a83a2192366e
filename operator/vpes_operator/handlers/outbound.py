"""Outbound holds follow the edge relay's counts, releases follow the annotation
(see `outbound.py`). Runs only when the chart deploys the relay (relay_status_url)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .. import watched
from ..outbound import OutboundPoll
from .background import background
from .events import post

log = logging.getLogger(__name__)
TICK = 1.0  # how often releases are looked for (in memory, no API call)


async def keep_outbound(memo: Any) -> None:
    settings = memo.settings
    if not settings.relay_status_url:
        return
    s = settings

    def maps() -> dict[str, Any]:
        """The edge's maps ConfigMap, what the relay's events are about."""
        live = memo.kube.get("v1", "ConfigMap", s.operator_namespace, s.edge_maps_name) or {}
        uid = str((live.get("metadata") or {}).get("uid") or "")
        meta = {"name": s.edge_maps_name, "namespace": s.operator_namespace, "uid": uid}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}

    poll = OutboundPoll(memo.kube, settings, post, watched.EDGE.values, maps_reference=maps)
    due = time.monotonic() + TICK
    while True:
        try:
            await asyncio.to_thread(poll.releases)
            if time.monotonic() >= due:
                due = time.monotonic() + settings.relay_poll_seconds
                await asyncio.to_thread(poll.poll)
        except Exception:
            log.exception("the outbound pass failed; again in %.0fs", TICK)
        await asyncio.sleep(TICK)


background("outbound", keep_outbound)
