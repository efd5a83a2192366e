"""kopf handlers, thin: one module per resource kind. Importing this registers them."""

from . import plan, server, startup, workload

__all__ = ["plan", "server", "startup", "workload"]
