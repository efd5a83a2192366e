"""kopf handlers, thin: one module per resource kind. Importing this registers them."""

from . import observe, plan, server, startup, workload

__all__ = ["observe", "plan", "server", "startup", "workload"]
