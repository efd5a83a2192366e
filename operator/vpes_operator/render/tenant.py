"""Render a tenant's Postfix and Dovecot configuration from its ``TenantContext``.

Pure functions: the same context gives the same bytes. Templates (Jinja2,
``StrictUndefined``) only print values and loop; every value is computed here
or in ``context``.

Files and mounts (see ``layout`` for the constants):

- ``render_config(ctx)`` returns the data of the tenant ConfigMap. ConfigMap
  keys cannot hold '/', so keys are flat and ``CONFIG_FILES`` maps each to its
  path under ``/etc/vpes/config``; the StatefulSet mounts the ConfigMap there,
  read-only, with those ``items``:

  ========================  ================================  ============================
  key                       path under /etc/vpes/config       what
  ========================  ================================  ============================
  ``dovecot.conf``          ``dovecot/dovecot.conf``          all of Dovecot's settings
  ``postfix-main.cf``       ``postfix/main.cf``               Postfix parameters
  ``postfix-master.cf``     ``postfix/master.cf``             Postfix services
  ``postfix-virtual``       ``postfix/virtual``               virtual_alias_maps
  ``postfix-vmailbox``      ``postfix/vmailbox``              virtual_mailbox_maps
  ``postfix-sender-login``  ``postfix/sender_login``          smtpd_sender_login_maps
  ``learn.conf``            ``learn/learn.conf``              spam training (vpes-learn)
  ``vacation.sieve``        ``sieve/vacation.sieve``          vacation replies (vacation.py)
  ========================  ================================  ============================

- ``render_passwd(ctx, hashes)`` returns Dovecot's passwd-file, key ``passwd``
  of the tenant Secret, mounted read-only (root only) at ``/etc/vpes/secrets``
  beside ``tls.crt`` and ``tls.key`` (the Secret's DKIM keys are not
  mounted). It holds hashes only. Dovecot reads vpes-init's copy of it,
  ``/run/vpes/dovecot-auth/passwd``, readable by the auth process's user only.
- ``/var/mail/vpes`` (the PVC): maildirs and indexes, and the Postfix queue
  (``postfix-queue``) so that queued mail survives restarts.
- ``/run/vpes`` (emptyDir): Dovecot's base_dir (``dovecot``, with the LMTP,
  auth and quota-status sockets Postfix uses) and state_dir
  (``dovecot-state``), Postfix's data_directory (``postfix``: TLS and other
  caches).

Lookup tables are ``texthash:`` tables read straight from the ConfigMap:
nothing to ``postmap``, no compiled copy in a writable directory that could
lag behind its source, and the kubelet swaps every file of the ConfigMap at
once, so main.cf and its tables always agree. texthash tables are read when a
Postfix process starts and are not re-read after, so the image watches
``/etc/vpes/config/..data`` and runs ``postfix reload`` (and ``doveadm
reload``) when it changes; a reload is graceful (running sessions finish)
and is needed anyway when main.cf itself changes (a new domain, a new message
size). Mailbox passwords and quotas need nothing: Dovecot re-reads its
passwd-file when its mtime changes, and the kubelet replaces it with a new
file on every Secret update. A renewed certificate needs the same two reloads
(Dovecot reads it with its configuration, Postfix when a process starts).

Ports (``layout.PORTS``): Postfix 25 (mail in), 587 (STARTTLS) and 465
(implicit TLS) submission; Dovecot 143/993 IMAP, 110/995 POP3, 4190
ManageSieve. Each has a twin 10000 higher (10025, 10587, ...) that expects a
PROXY protocol header, for a TCP load balancer that keeps the client's
address; the plain ports serve the edge's own daemons and probes (Postfix
cannot send PROXY headers). LMTP, SASL auth and quota-status are unix sockets
under ``/run/vpes/dovecot``, never ports.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2

from . import antispam, vacation
from .checks import RenderError
from .context import TenantContext
from .layout import (
    CONFIG_FILES,
    DOVECOT_AUTH_SOCKET,
    DOVECOT_AUTH_USER,
    DOVECOT_BASE_DIR,
    DOVECOT_LMTP_SOCKET,
    DOVECOT_PASSWD_PATH,
    DOVECOT_QUOTA_STATUS_SOCKET,
    DOVECOT_STATE_DIR,
    INTERNAL_SUBMISSION,
    MAIL_DIR,
    PORTS,
    POSTFIX_CONFIG_DIR,
    POSTFIX_DATA_DIR,
    POSTFIX_QUEUE_DIR,
    RELAY_SASL_PATH,
    TLS_CERT_PATH,
    TLS_KEY_PATH,
    USAGE_COMMAND,
    USAGE_PORT,
    VACATION_SCRIPT_KEY,
    VMAIL_GID,
    VMAIL_GROUP,
    VMAIL_UID,
    VMAIL_USER,
)

__all__ = [
    "CONFIG_FILES",
    "PASSWORD_SCHEMES",
    "PasswdEntry",
    "format_passwd",
    "passwd_entries",
    "render_config",
    "render_passwd",
    "render_template",
]

# Hash schemes a passwd-file may hold (Dovecot's names). Never PLAIN.
PASSWORD_SCHEMES = ("ARGON2ID", "BLF-CRYPT")

# Forward-secret AEAD suites for TLS 1.2 (TLS 1.3 suites are all fine); no DHE,
# so neither daemon needs DH parameters.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)

# Process limits: a personal server has a handful of users.
POSTFIX_PROCESS_LIMIT = 8
# One client may hold at most this many of a service's processes at once, so
# that a client holding idle connections leaves room for at least three others.
SMTPD_CLIENT_CONNECTIONS = 2
DOVECOT_PROCESS_LIMIT = 16
IMAP_PROCESS_LIMIT = 48
POP3_PROCESS_LIMIT = 8
SIEVE_PROCESS_LIMIT = 4

_LOGIN_SERVICES = {
    "imap": "imap-login",
    "imaps": "imap-login",
    "pop3": "pop3-login",
    "pop3s": "pop3-login",
    "sieve": "managesieve-login",
}
_IMPLICIT_TLS = {"imaps", "pop3s", "submissions"}


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("vpes_operator.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - mail server configuration, not HTML
    )


def render_template(name: str, values: Mapping[str, Any]) -> str:
    """Render one template; a value the template needs but ``values`` lacks raises."""
    return _environment().get_template(name).render(values)


def render_config(ctx: TenantContext) -> dict[str, str]:
    """The tenant ConfigMap's data: key (see ``CONFIG_FILES``) → file content."""
    values = _values(ctx)
    files = {key: render_template(f"{key}.j2", values) for key in sorted(CONFIG_FILES)}
    vacation.check_size(files[VACATION_SCRIPT_KEY])
    return files


def _listeners() -> dict[str, Any]:
    """Postfix's ports (master.cf) and Dovecot's login services with their listeners."""
    postfix_ports = [
        {
            "service": f"{p.port:<12}",
            "name": p.name,
            "proxy": p.proxy,
            "implicit_tls": p.protocol in _IMPLICIT_TLS,
            "submission": p.protocol in ("submission", "submissions"),
            # Only the plain port 25 takes mail from the edge's MX alone (the
            # NetworkPolicy), whose X-Spam header is the edge's verdict.
            "edge_verdict": p.protocol == "smtp" and not p.proxy,
        }
        for p in PORTS
        if p.daemon == "postfix"
    ]
    logins: dict[str, list[dict[str, Any]]] = {}
    for p in PORTS:
        if p.daemon == "dovecot":
            logins.setdefault(_LOGIN_SERVICES[p.protocol], []).append(
                {
                    "name": p.name.replace("-", "_"),
                    "port": p.port,
                    "ssl": p.protocol in _IMPLICIT_TLS,
                    "haproxy": p.proxy,
                }
            )
    return {
        "ports": postfix_ports,
        "logins": [{"service": s, "listeners": ls} for s, ls in sorted(logins.items())],
    }


# Who may send a PROXY header to the PROXY listeners: anyone that reaches them
# (the NetworkPolicy decides who does).
PROXY_SOURCES = "0.0.0.0/0 ::/0"


def _values(ctx: TenantContext) -> dict[str, Any]:
    edge = ctx.edge_networks
    postfix_edge = [f"[{n.split('/')[0]}]/{n.split('/')[1]}" if ":" in n else n for n in edge]
    return {
        "header": (
            f"Rendered by vpes for PersonalMailServer {ctx.namespace}/{ctx.name}. "
            "Do not edit: the operator rewrites it."
        ),
        "hostname": ctx.hostname,
        "domains": list(ctx.domains),
        "mailboxes": [m.address for m in ctx.mailboxes],
        "virtual": [
            {"address": v.address, "targets": ", ".join(v.targets)} for v in ctx.virtual_aliases
        ],
        "sender_logins": [
            {"address": s.address, "logins": ", ".join(s.logins)} for s in ctx.sender_logins
        ],
        "message_size_limit": ctx.max_message_size_bytes,
        "queue_minfree": ctx.queue_minfree_bytes,
        "usage": {"port": USAGE_PORT, "command": USAGE_COMMAND},
        "default_quota_bytes": ctx.default_quota_bytes,
        "relay_host": ctx.relay_host,
        "relay_retry_seconds": ctx.relay_retry_seconds,
        "relay_sasl_map": f"texthash:{RELAY_SASL_PATH}",
        "event_limit_exceptions": " ".join(postfix_edge),
        "internal": {"service": INTERNAL_SUBMISSION, "networks": "127.0.0.0/8"},
        "edge_networks": " ".join(edge),
        "proxy_sources": PROXY_SOURCES,
        "queue_directory": POSTFIX_QUEUE_DIR,
        "data_directory": POSTFIX_DATA_DIR,
        "vmailbox_map": f"texthash:{POSTFIX_CONFIG_DIR}/vmailbox",
        "virtual_map": f"texthash:{POSTFIX_CONFIG_DIR}/virtual",
        "sender_login_map": f"texthash:{POSTFIX_CONFIG_DIR}/sender_login",
        "lmtp_socket": DOVECOT_LMTP_SOCKET,
        "auth_socket": DOVECOT_AUTH_SOCKET,
        "quota_status_socket": DOVECOT_QUOTA_STATUS_SOCKET,
        "internal_submission": INTERNAL_SUBMISSION,
        "tls_cert": TLS_CERT_PATH,
        "tls_key": TLS_KEY_PATH,
        "tls12_ciphers": TLS12_CIPHERS,
        **_listeners(),
        "base_dir": DOVECOT_BASE_DIR,
        "state_dir": DOVECOT_STATE_DIR,
        "passwd_path": DOVECOT_PASSWD_PATH,
        "dovecot_auth_user": DOVECOT_AUTH_USER,
        "mail_root": MAIL_DIR,
        "vmail_user": VMAIL_USER,
        "vmail_group": VMAIL_GROUP,
        "vmail_uid": VMAIL_UID,
        "vmail_gid": VMAIL_GID,
        "postfix_process_limit": POSTFIX_PROCESS_LIMIT,
        "smtpd_client_connections": SMTPD_CLIENT_CONNECTIONS,
        "dovecot_process_limit": DOVECOT_PROCESS_LIMIT,
        "imap_process_limit": IMAP_PROCESS_LIMIT,
        "pop3_process_limit": POP3_PROCESS_LIMIT,
        "sieve_process_limit": SIEVE_PROCESS_LIMIT,
        "quota_status_process_limit": POSTFIX_PROCESS_LIMIT,
        **antispam.values(ctx.antispam),
        **vacation.values(ctx.vacations),
        # Extensions only the global scripts may use: the learn scripts pipe, the
        # vacation script reads the user's name.
        "sieve_global_extensions": " ".join(
            [
                *(["+vnd.dovecot.pipe"] if ctx.antispam.training else []),
                *(["+vnd.dovecot.environment"] if ctx.vacations else []),
            ]
        ),
    }


@dataclass(frozen=True)
class PasswdEntry:
    """One mailbox's line of the passwd-file."""

    address: str
    password_hash: str  # "{BLF-CRYPT}$2b$..." or "{ARGON2ID}$argon2id$..."
    quota_bytes: int


_HASH_RE = re.compile(r"\{(?P<scheme>[A-Z0-9-]+)\}\$[!-~]+")


def passwd_entries(ctx: TenantContext, hashes: Mapping[str, str]) -> tuple[PasswdEntry, ...]:
    """Pair each mailbox of ``ctx`` with its password hash (address → hash)."""
    missing = [m.address for m in ctx.mailboxes if m.address not in hashes]
    if missing:
        raise RenderError(f"no password hash for mailbox(es) {', '.join(missing)}")
    return tuple(PasswdEntry(m.address, hashes[m.address], m.quota_bytes) for m in ctx.mailboxes)


def render_passwd(ctx: TenantContext, hashes: Mapping[str, str]) -> str:
    """Dovecot's passwd-file for the mailboxes of ``ctx`` (``hashes``: address → hash).

    The hashes are made elsewhere (BLF-CRYPT or ARGON2ID); every mailbox needs
    one, and addresses that are not mailboxes are ignored.
    """
    return format_passwd(passwd_entries(ctx, hashes))


def format_passwd(entries: Iterable[PasswdEntry]) -> str:
    """Dovecot's passwd-file: ``user:{SCHEME}hash::::::userdb_quota_rule=*:bytes=N``.

    uid, gid and home are empty: the global mail_uid/mail_gid/mail_home apply.
    Only hashed passwords in ``PASSWORD_SCHEMES`` are accepted.
    """
    lines: dict[str, str] = {}
    for e in entries:
        if e.address in lines:
            raise RenderError(f"mailbox {e.address} appears twice in the passwd-file")
        if ":" in e.address or not e.address or any(c.isspace() for c in e.address):
            raise RenderError(f"{e.address!r} cannot be a passwd-file user name")
        match = _HASH_RE.fullmatch(e.password_hash)
        if match is None or match["scheme"] not in PASSWORD_SCHEMES or ":" in e.password_hash:
            raise RenderError(
                f"mailbox {e.address}: the password must be a hash in one of "
                f"{', '.join(PASSWORD_SCHEMES)} ('{{SCHEME}}$...'), never plaintext"
            )
        if e.quota_bytes <= 0:
            raise RenderError(f"mailbox {e.address}: quota must be more than 0 bytes")
        lines[e.address] = (
            f"{e.address}:{e.password_hash}::::::userdb_quota_rule=*:bytes={e.quota_bytes}\n"
        )
    return "".join(lines[a] for a in sorted(lines))
