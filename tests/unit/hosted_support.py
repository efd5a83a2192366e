"""An index of hosted domains fed as its informers would, from fixed lists."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vpes_panel.wellknown.hosted import HostedDomains


def indexed(
    servers: Iterable[dict[str, Any]], plans: Iterable[dict[str, Any]] = ()
) -> HostedDomains:
    """The index after the first list of `servers` and of `plans`."""
    hosted = HostedDomains()
    hosted.servers.replace(list(servers))
    hosted.plans.replace(list(plans))
    assert hosted.refresh()
    return hosted
