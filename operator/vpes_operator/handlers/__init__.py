"""kopf handlers, thin: one module per resource kind. Importing this registers them."""

from . import backup, dns, observe, plan, server, startup, workload

__all__ = ["backup", "dns", "observe", "plan", "server", "startup", "workload"]
