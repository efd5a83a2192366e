"""The tenants of ``bench/node.py``: their plan (what a small customer gets), a
server's spec, and the namespaces each phase makes them in."""

from __future__ import annotations

from typing import Any

from vpes_operator.models.plan import MailPlanSpec

from tests.integration.operator_support import plan_body

PLAN = "bench-node"
# As the e2e tier's small_plan: what a small customer gets.
RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}
NS_OP, NS_BASE, NS_MEM = "bn-operator", "bn-baseline", "bn-memory"


def spec(name: str) -> dict[str, Any]:
    return {
        "plan": PLAN,
        "owner": {"email": f"owner@{name}.example"},
        "domains": [f"{name}.example"],
        "mailboxes": [{"address": f"me@{name}.example", "aliases": ["info"]}],
    }


def plan_spec() -> MailPlanSpec:
    body = plan_body(PLAN, resources=RESOURCES, backup={"enabled": False})
    return MailPlanSpec.model_validate(body["spec"])
