"""Keep the metrics' view of every server current from the watch stream."""

from __future__ import annotations

from typing import Any

import kopf

from .. import GROUP, VERSION, metrics


@kopf.on.event(GROUP, VERSION, "personalmailservers")
async def server_seen(body: kopf.Body, type: str, **_: Any) -> None:
    metrics.SERVERS.update(dict(body), deleted=type == "DELETED")
