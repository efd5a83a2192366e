"""Waiting on a condition, with a deadline and a message that says what never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(TimeoutError):
    """The condition did not hold before the deadline."""


def wait_for(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Call ``condition`` until it returns something truthy and return that; raise
    :class:`WaitTimeoutError` naming ``what`` (and the last value seen) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"timed out after {timeout:g} s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)
