"""kopf handlers, thin: one module per resource kind. Importing this registers them."""

from . import dns, observe, plan, server, startup, workload

__all__ = ["dns", "observe", "plan", "server", "startup", "workload"]
