"""Which domains may log in to the shared webmail: the maps' ``webmail-domains``.

One domain a line, sorted: every domain the edge routes (``routing``) to a server
whose plan has ``features.webmail``. The webmail pods mount this one key and refuse
a login of any other domain. It follows the login proxy's routing exactly, since
webmail reaches each mailbox through that proxy: a domain two servers list counts
for the server it is routed to only; a suspended server's domains stay listed (the
proxy routes them too, and the tenant itself answers its logins); a server being
deleted routes nothing. A plan that is missing or does not validate grants nothing
(a feature is sold by a plan that says so; ``antispam`` falls back to the model's
default instead, because mail must flow either way).

This key is not one of the edge's maps: it is left out of their ``version``, and
the edge's pods do not mount it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from ..models.plan import MailPlanSpec, PlanJSON
from ..models.server import PersonalMailServer
from .routing import Routing, key_of

KEY = "webmail-domains"


def allowed(plan: PlanJSON | None) -> bool:
    """Whether `plan` sells webmail (False: no plan, or one that does not validate)."""
    if plan is None:
        return False
    try:
        return MailPlanSpec.model_validate(plan).features.webmail
    except ValidationError:
        return False


def domains(
    fleet: Iterable[PersonalMailServer], routed: Routing, plans: Mapping[str, PlanJSON]
) -> str:
    """The text of ``webmail-domains`` for the live servers `fleet` routed as `routed`."""
    sells = {name: allowed(plan) for name, plan in plans.items()}  # each plan read once
    out: set[str] = set()
    for server in fleet:
        if sells.get(server.plan, False):
            out.update(routed.domains_of(key_of(server)))
    return "".join(f"{d}\n" for d in sorted(out))
