"""The tenant configuration renderer: a PMS → Postfix and Dovecot configuration.

``build_context`` (context.py) computes every value: who receives which
address (addresses.py), each single value checked (checks.py);
``render_config`` and ``render_passwd`` (tenant.py) print them through Jinja2
templates; ``layout`` says where the files, sockets and mail live and which ports a tenant opens.
"""

from __future__ import annotations

from . import antispam, layout
from .addresses import MailboxContext, SenderLogin, VirtualAlias
from .checks import RenderError
from .context import TenantContext, build_context
from .layout import (
    CONFIG_DIR,
    MAIL_DIR,
    PORTS,
    RUN_DIR,
    SECRETS_DIR,
    VMAIL_GID,
    VMAIL_GROUP,
    VMAIL_UID,
    VMAIL_USER,
    Port,
)
from .tenant import (
    CONFIG_FILES,
    PasswdEntry,
    format_passwd,
    passwd_entries,
    render_config,
    render_passwd,
)

__all__ = [
    "CONFIG_DIR",
    "CONFIG_FILES",
    "MAIL_DIR",
    "PORTS",
    "RUN_DIR",
    "SECRETS_DIR",
    "VMAIL_GID",
    "VMAIL_GROUP",
    "VMAIL_UID",
    "VMAIL_USER",
    "MailboxContext",
    "PasswdEntry",
    "Port",
    "RenderError",
    "SenderLogin",
    "TenantContext",
    "VirtualAlias",
    "antispam",
    "build_context",
    "format_passwd",
    "layout",
    "passwd_entries",
    "render_config",
    "render_passwd",
]
