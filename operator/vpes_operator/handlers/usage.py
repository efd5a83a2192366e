"""Each running server's storage is measured every `usage_interval_seconds`
(see `usage.py`): status.usage, StorageHealthy and its events."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from .. import health, usage
from .events import post
from .server import plan_spec

log = logging.getLogger(__name__)


async def measure_forever(poll: usage.UsagePoll, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            measured, silent = await asyncio.to_thread(poll.run)
            log.debug("usage measured for %d servers (%d gave no report)", measured, silent)
        except Exception:
            log.exception("measuring the servers' usage failed; again in %.0fs", every)


@kopf.on.startup()
async def start_usage(memo: kopf.Memo, **_: Any) -> None:
    # After `configure` (kopf runs start-up handlers in the order they were registered).
    poll = usage.UsagePoll(
        memo.kube,
        memo.settings,
        plan=lambda name: plan_spec(memo.kube, name),
        post=post,
        namespaces=health.HEALTH.namespaces,
    )
    every = memo.settings.usage_interval_seconds
    memo.usage = poll
    memo.usage_poll = asyncio.create_task(measure_forever(poll, every))


@kopf.on.cleanup()
async def stop_usage(memo: kopf.Memo, **_: Any) -> None:
    poll = getattr(memo, "usage", None)
    if poll is not None:
        poll.stopping.set()  # a pass in its thread ends now, not at its end
    task = getattr(memo, "usage_poll", None)
    if task is not None:
        task.cancel()
