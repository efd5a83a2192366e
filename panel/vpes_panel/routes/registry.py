"""Every page of the panel, in one table: each module of routes/ adds its own."""

from __future__ import annotations

from starlette.routing import Route

from ..web import Panel
from . import addresses, auth, domains, mailbox_edit, mailboxes, overview


def routes(panel: Panel) -> list[Route]:
    return [
        *auth.Auth(panel).routes(),
        *overview.routes(panel),
        *domains.routes(panel),
        *mailboxes.routes(panel),
        *mailbox_edit.routes(panel),
        *addresses.routes(panel),
    ]
