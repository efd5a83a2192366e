"""Checks of a server's spec against its plan: what the API schema cannot know."""

from __future__ import annotations

from .errors import ConfigError
from .models.plan import MailPlanSpec
from .models.server import PersonalMailServerSpec
from .quantity import parse_bytes


def check(plan_name: str, spec: PersonalMailServerSpec, plan: MailPlanSpec) -> None:
    """Raise ConfigError naming the first limit the spec exceeds and how to fix it."""
    problems: list[str] = []
    over_plan = False
    if len(spec.domains) > plan.max_domains:
        over_plan = True
        problems.append(
            f"{len(spec.domains)} domains but plan {plan_name!r} allows {plan.max_domains}"
        )
    if len(spec.mailboxes) > plan.max_mailboxes:
        over_plan = True
        problems.append(
            f"{len(spec.mailboxes)} mailboxes but plan {plan_name!r} allows {plan.max_mailboxes}"
        )
    storage = parse_bytes(plan.storage)
    for m in spec.mailboxes:
        quota_text = m.quota or plan.default_quota
        if parse_bytes(quota_text) > storage:
            over_plan = True
            problems.append(
                f"mailbox {m.address} has a {quota_text} quota but the plan's whole volume "
                f"is {plan.storage}"
            )
    addresses = {m.address for m in spec.mailboxes}
    for m in spec.mailboxes:
        for alias in m.aliases:
            full = [alias] if "@" in alias else [f"{alias}@{d}" for d in spec.domains]
            taken = [a for a in full if a in addresses and a != m.address]
            if taken:
                problems.append(f"alias {alias!r} of {m.address} is also the mailbox {taken[0]}")
    if problems:
        raise ConfigError(
            "PlanLimitExceeded" if over_plan else "InvalidMailboxes",
            "; ".join(problems)
            + ". Change the server's spec or move it to a larger plan; the previous "
            "configuration keeps running.",
        )
