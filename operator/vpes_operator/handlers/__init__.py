"""kopf handlers, thin: one module per resource kind. Importing this registers them."""

# `startup` first: kopf runs start-up handlers in the order they were registered,
# and the others use what its `configure` puts in `memo`.
from . import startup  # isort: skip
from . import (
    backup,
    certificates,
    dns,
    drift,
    edge,
    fleet,
    observe,
    outbound,
    plan,
    server,
    usage,
    workload,
)  # isort: skip

__all__ = [
    "backup",
    "certificates",
    "dns",
    "drift",
    "edge",
    "fleet",
    "observe",
    "outbound",
    "plan",
    "server",
    "startup",
    "usage",
    "workload",
]
