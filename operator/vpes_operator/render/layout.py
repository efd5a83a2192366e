"""Where things live in a tenant pod, and which ports it listens on.

The one place that says it: the renderer writes these paths into the Postfix and
Dovecot configuration, the StatefulSet builder mounts volumes at them and opens
the ports, the image creates the users and directories. Everything below is
imported from here (or re-exported by ``vpes_operator.render``), never retyped.

Mounts (the container's root filesystem is read-only):

==========================  ========================  =====  ===============================
path                        volume                    mode   holds
==========================  ========================  =====  ===============================
``/etc/vpes/config``        ConfigMap ``<pms>-config``  ro   Postfix and Dovecot configuration
                                                              and Postfix lookup tables, mounted
                                                              with ``items`` (``CONFIG_FILES``)
``/etc/vpes/secrets``       Secret(s)                   ro   ``passwd`` (Dovecot passwd-file),
                                                              ``tls.crt``, ``tls.key``,
                                                              ``dkim-<domain>.key``
``/var/mail/vpes``          PVC (the mail volume)       rw   ``<domain>/<local>/Maildir`` and
                                                              ``<domain>/<local>/index`` (Dovecot),
                                                              sieve scripts in the same home,
                                                              ``postfix-queue/`` (Postfix queue)
``/run/vpes``               emptyDir                    rw   sockets, pids, caches:
                                                              ``dovecot/`` (base_dir),
                                                              ``dovecot-state/`` (state_dir),
                                                              ``postfix/`` (data_directory)
==========================  ========================  =====  ===============================

The Postfix queue is on the mail volume so mail accepted but not yet delivered
(to a mailbox or out through the relay) survives a restart; its name holds no
dot, so it can never be a mail domain's directory. Everything on ``/run/vpes``
is rebuilt at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CONFIG_MOUNT",
    "DOVECOT_AUTH_SOCKET",
    "DOVECOT_BASE_DIR",
    "DOVECOT_CONFIG_PATH",
    "DOVECOT_LMTP_SOCKET",
    "DOVECOT_QUOTA_STATUS_SOCKET",
    "DOVECOT_STATE_DIR",
    "HOSTNAME_SUFFIX",
    "INTERNAL_SUBMISSION",
    "MAIL_MOUNT",
    "PASSWD_KEY",
    "PASSWD_PATH",
    "PORTS",
    "PROXY_OFFSET",
    "POSTFIX_CONFIG_DIR",
    "POSTFIX_DATA_DIR",
    "POSTFIX_QUEUE_DIR",
    "RUN_MOUNT",
    "SECRETS_MOUNT",
    "TLS_CERT_KEY",
    "TLS_CERT_PATH",
    "TLS_KEY_KEY",
    "TLS_KEY_PATH",
    "VMAIL_GID",
    "VMAIL_GROUP",
    "VMAIL_UID",
    "VMAIL_USER",
    "Daemon",
    "Port",
    "Protocol",
    "dkim_key_name",
    "dkim_key_path",
    "maildir_path",
]

# The single system user that owns every mailbox (Dovecot mail_uid/mail_gid).
# The image creates it with exactly these ids; the StatefulSet uses the gid as
# fsGroup so the mail volume is writable by it.
VMAIL_USER = "vmail"
VMAIL_GROUP = "vmail"
VMAIL_UID = 5000
VMAIL_GID = 5000

CONFIG_MOUNT = "/etc/vpes/config"
SECRETS_MOUNT = "/etc/vpes/secrets"
MAIL_MOUNT = "/var/mail/vpes"
RUN_MOUNT = "/run/vpes"

POSTFIX_CONFIG_DIR = f"{CONFIG_MOUNT}/postfix"
DOVECOT_CONFIG_PATH = f"{CONFIG_MOUNT}/dovecot/dovecot.conf"

# Keys of the tenant Secret(s) mounted at SECRETS_MOUNT.
PASSWD_KEY = "passwd"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
PASSWD_PATH = f"{SECRETS_MOUNT}/{PASSWD_KEY}"
TLS_CERT_PATH = f"{SECRETS_MOUNT}/{TLS_CERT_KEY}"
TLS_KEY_PATH = f"{SECRETS_MOUNT}/{TLS_KEY_KEY}"

POSTFIX_QUEUE_DIR = f"{MAIL_MOUNT}/postfix-queue"
POSTFIX_DATA_DIR = f"{RUN_MOUNT}/postfix"
DOVECOT_BASE_DIR = f"{RUN_MOUNT}/dovecot"
DOVECOT_STATE_DIR = f"{RUN_MOUNT}/dovecot-state"

# Unix sockets Dovecot offers Postfix (in base_dir; never a port).
DOVECOT_LMTP_SOCKET = f"{DOVECOT_BASE_DIR}/lmtp"
DOVECOT_AUTH_SOCKET = f"{DOVECOT_BASE_DIR}/auth-postfix"
DOVECOT_QUOTA_STATUS_SOCKET = f"{DOVECOT_BASE_DIR}/quota-status"

# Where Dovecot (sieve redirect, vacation) hands outgoing mail to Postfix:
# port 25 on loopback, which Postfix lets relay ($mynetworks is loopback only).
INTERNAL_SUBMISSION = "127.0.0.1:25"

# A tenant's own host name is <pms>.<namespace>.HOSTNAME_SUFFIX: stable whatever
# domains the customer adds or removes, never resolvable on the internet, and
# it names the pod, not a customer domain (".internal" is reserved for private
# use by ICANN).
HOSTNAME_SUFFIX = "vpes.internal"


def maildir_path(address: str) -> str:
    """The home directory of a mailbox on the mail volume (Dovecot's %d/%n)."""
    local, _, domain = address.rpartition("@")
    return f"{MAIL_MOUNT}/{domain}/{local}"


def dkim_key_name(domain: str) -> str:
    """The Secret key holding a domain's DKIM private key."""
    return f"dkim-{domain}.key"


def dkim_key_path(domain: str) -> str:
    return f"{SECRETS_MOUNT}/{dkim_key_name(domain)}"


Daemon = Literal["postfix", "dovecot"]
Protocol = Literal["smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "sieve"]


@dataclass(frozen=True)
class Port:
    """A port a tenant container listens on.

    ``proxy`` ports expect a PROXY protocol (v1 or v2) header before anything
    else and refuse a connection without one; they are for a TCP load balancer
    that keeps the client's address (the edge, or a plan's dedicated address).
    The plain ports are for the edge's own daemons (inbound MX, IMAP/submission
    proxy) and the operator's probes, which connect themselves.
    """

    name: str  # container/Service port name (IANA_SVC_NAME: <= 15 chars)
    number: int
    daemon: Daemon
    protocol: Protocol
    proxy: bool


# A PROXY protocol port is its plain twin plus 10000.
PROXY_OFFSET = 10000
_PLAIN: tuple[tuple[Protocol, int, Daemon], ...] = (
    ("smtp", 25, "postfix"),
    ("submission", 587, "postfix"),
    ("submissions", 465, "postfix"),
    ("imap", 143, "dovecot"),
    ("imaps", 993, "dovecot"),
    ("pop3", 110, "dovecot"),
    ("pop3s", 995, "dovecot"),
    ("sieve", 4190, "dovecot"),
)
PORTS: tuple[Port, ...] = tuple(
    Port(
        name=f"{name}-pp" if proxy else name,
        number=number + PROXY_OFFSET if proxy else number,
        daemon=daemon,
        protocol=name,
        proxy=proxy,
    )
    for proxy in (False, True)
    for name, number, daemon in _PLAIN
)
