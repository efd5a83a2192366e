"""Every page of the panel, in one table: each module of routes/ adds its own."""

from __future__ import annotations

from starlette.routing import Route

from ..web import Panel
from . import (
    account,
    addresses,
    auth,
    backups,
    domains,
    mailbox_edit,
    mailboxes,
    overview,
    plan,
    setup,
)


def routes(panel: Panel) -> list[Route]:
    return [
        *auth.Auth(panel).routes(),
        *overview.routes(panel),
        *domains.routes(panel),
        *mailboxes.routes(panel),
        *mailbox_edit.routes(panel),
        *addresses.routes(panel),
        *account.Account(panel).routes(),
        *setup.routes(panel),
        *backups.routes(panel),
        *plan.routes(panel),
    ]
