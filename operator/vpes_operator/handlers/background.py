"""Work the operator runs beside kopf's handlers, from start-up to cleanup."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import kopf


def background(name: str, make: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
    """Run the coroutine `make(memo)` from kopf's start-up until its cleanup, as the task
    `memo.<name>`. Start-up handlers run in the order they were registered: one
    registered after `startup.configure` finds the settings and the client in `memo`."""

    @kopf.on.startup(id=f"start-{name}")
    async def start(memo: kopf.Memo, **_: Any) -> None:
        setattr(memo, name, asyncio.create_task(make(memo)))

    @kopf.on.cleanup(id=f"stop-{name}")
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        cancel(memo, name)


def cancel(memo: kopf.Memo, name: str) -> None:
    """Cancel the task `memo.<name>`, if it was started."""
    task = getattr(memo, name, None)
    if task is not None:
        task.cancel()


async def repeat(
    work: Callable[[], object],
    every: float,
    *,
    log: logging.Logger,
    failed: str,
    first: float = 0.0,
) -> None:
    """Run the blocking `work` in a thread every `every` seconds, the first time after
    `first`; a failure is logged (`failed`) and the work runs again at its next turn."""
    await asyncio.sleep(first)
    while True:
        try:
            await asyncio.to_thread(work)
        except Exception:
            log.exception(failed)
        await asyncio.sleep(every)
