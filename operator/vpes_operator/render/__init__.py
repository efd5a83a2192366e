"""The tenant configuration renderer: a PMS → Postfix and Dovecot configuration.

``build_context`` (context.py) computes every value; ``render_config`` and
``render_passwd`` (tenant.py) print them through Jinja2 templates; ``layout``
says where the files, sockets and mail live and which ports a tenant opens.
"""

from __future__ import annotations

from .context import (
    DkimKey,
    MailboxContext,
    RenderError,
    SenderLogin,
    TenantContext,
    VirtualAlias,
    build_context,
)
from .layout import (
    CONFIG_MOUNT,
    MAIL_MOUNT,
    PORTS,
    RUN_MOUNT,
    SECRETS_MOUNT,
    VMAIL_GID,
    VMAIL_GROUP,
    VMAIL_UID,
    VMAIL_USER,
    Port,
)
from .tenant import CONFIG_FILES, PasswdEntry, passwd_entries, render_config, render_passwd

__all__ = [
    "CONFIG_FILES",
    "CONFIG_MOUNT",
    "MAIL_MOUNT",
    "PORTS",
    "RUN_MOUNT",
    "SECRETS_MOUNT",
    "VMAIL_GID",
    "VMAIL_GROUP",
    "VMAIL_UID",
    "VMAIL_USER",
    "DkimKey",
    "MailboxContext",
    "PasswdEntry",
    "Port",
    "RenderError",
    "SenderLogin",
    "TenantContext",
    "VirtualAlias",
    "build_context",
    "passwd_entries",
    "render_config",
    "render_passwd",
]
