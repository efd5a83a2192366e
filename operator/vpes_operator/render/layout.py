"""Where things live in a tenant pod, and which ports it listens on.

The one place that says it: the renderer writes these paths into the Postfix and
Dovecot configuration, the StatefulSet builder mounts volumes at them and opens
the ports, the image creates the users and directories. Everything below is
imported from here (or re-exported by ``vpes_operator.render``), never retyped.

Mounts (the container's root filesystem is read-only):

- ``/etc/vpes/config`` (``CONFIG_DIR``), the tenant ConfigMap, read-only,
  mounted with ``items`` (``CONFIG_FILES``: key → path): ``postfix/main.cf``,
  ``postfix/master.cf``, the Postfix lookup tables ``postfix/virtual``,
  ``postfix/vmailbox``, ``postfix/sender_login``, ``dovecot/dovecot.conf``,
  ``learn/learn.conf`` (spam training: the controller's URL and the learn
  spool's bounds; no URL when the server does not train) and
  ``sieve/vacation.sieve`` (every mailbox's vacation reply, one script: a
  fixed key, so a reply turned on or off changes no ``items`` and restarts
  nothing).
- ``/etc/vpes/secrets`` (``SECRETS_DIR``), the tenant Secret, read-only,
  mounted with ``items`` (``SECRET_FILES``, mode ``SECRET_MODE``: 0400) so
  that only what the tenant reads is there: ``passwd`` (Dovecot's
  passwd-file: hashes and quotas), ``tls.crt``, ``tls.key``, ``relay-sasl`` and
  ``antispam-password`` (the shared Rspamd controller's password; empty when
  the server does not train). The Secret's
  other keys (the operator's hash store, DKIM keys: signing is the outbound
  relay's job) never reach the pod. The pod sets no fsGroup (the kubelet
  would give every file of a Secret volume group fsGroup and add group read,
  whatever its mode), so the files are root:root 0400: readable by root
  only. Dovecot's config process and every Postfix daemon open the TLS files
  as root before dropping privileges; Dovecot's auth process (user
  ``DOVECOT_AUTH_USER``) reads its own copy of ``passwd`` (below).
- ``/var/mail/vpes`` (``MAIL_DIR``), the PVC, read-write: vpes-init makes
  its top directory root:``VMAIL_GROUP``, mode 2775, at each start (no
  fsGroup does it, see above). ``<domain>/<local>/`` is a mailbox's home
  (created and owned by ``VMAIL_USER``), holding ``Maildir/``, ``index/``
  (Dovecot indexes, kept apart so backups may skip them), the sieve
  scripts and ``sieve-vacation/`` (the vacation script compiled for that
  user); ``postfix-queue/`` is Postfix's queue, here so mail accepted but
  not yet delivered (to a mailbox or out through the relay) survives a
  restart. Its name holds no dot, so it is never a domain's
  directory.
- ``/run/vpes`` (``RUN_DIR``), an emptyDir, read-write: ``dovecot/``
  (base_dir: the LMTP, auth and quota-status sockets Postfix uses),
  ``dovecot-state/`` (state_dir) and ``postfix/`` (data_directory: TLS and
  other caches), ``dovecot-auth/passwd`` (``DOVECOT_PASSWD_PATH``: vpes-init
  copies the Secret's ``passwd`` there at start and on every change,
  root:``DOVECOT_AUTH_USER`` 0440 in a directory of the same owners, mode
  0750: the auth process reads it, the mail user's sessions cannot). Nothing
  there needs to outlive the pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ANTISPAM_PASSWORD_KEY",
    "CONFIG_DIR",
    "CONFIG_FILES",
    "DEDICATED_PORTS",
    "DOVECOT_AUTH_DIR",
    "DOVECOT_AUTH_SOCKET",
    "DOVECOT_AUTH_USER",
    "DOVECOT_BASE_DIR",
    "DOVECOT_CONFIG_PATH",
    "DOVECOT_LMTP_SOCKET",
    "DOVECOT_PASSWD_PATH",
    "DOVECOT_QUOTA_STATUS_SOCKET",
    "DOVECOT_STATE_DIR",
    "HOSTNAME_SUFFIX",
    "INTERNAL_SUBMISSION",
    "LEARN_CONFIG_PATH",
    "LEARN_PROGRAM",
    "LEARN_SPOOL_DIR",
    "MAIL_DIR",
    "PASSWD_KEY",
    "PASSWD_PATH",
    "PORTS",
    "POSTFIX_CONFIG_DIR",
    "POSTFIX_DATA_DIR",
    "POSTFIX_QUEUE_DIR",
    "PROXY_OFFSET",
    "RELAY_SASL_KEY",
    "RELAY_SASL_PATH",
    "RUN_DIR",
    "SECRETS_DIR",
    "SECRET_FILES",
    "SECRET_MODE",
    "SIEVE_DIR",
    "SIEVE_PIPE_DIR",
    "TLS_CERT_KEY",
    "TLS_CERT_PATH",
    "TLS_KEY_KEY",
    "TLS_KEY_PATH",
    "USAGE_COMMAND",
    "USAGE_PORT",
    "USAGE_PORT_NAME",
    "VACATION_BIN_DIR",
    "VACATION_SCRIPT_KEY",
    "VACATION_SCRIPT_PATH",
    "VMAIL_GID",
    "VMAIL_GROUP",
    "VMAIL_UID",
    "VMAIL_USER",
    "Daemon",
    "Port",
    "Protocol",
    "dkim_key_name",
    "maildir_path",
]

# The single system user that owns every mailbox (Dovecot mail_uid/mail_gid).
# The image creates it with exactly these ids; vpes-init gives the mail
# volume's top directory this group (the pod sets no fsGroup: see above).
VMAIL_USER = "vmail"
VMAIL_GROUP = "vmail"
VMAIL_UID = 5000
VMAIL_GID = 5000

CONFIG_DIR = "/etc/vpes/config"
SECRETS_DIR = "/etc/vpes/secrets"
MAIL_DIR = "/var/mail/vpes"
RUN_DIR = "/run/vpes"

# ConfigMap key → path under CONFIG_DIR. ConfigMap keys cannot hold '/', so the
# StatefulSet mounts the ConfigMap with these ``items``.
CONFIG_FILES: dict[str, str] = {
    "dovecot.conf": "dovecot/dovecot.conf",
    "postfix-main.cf": "postfix/main.cf",
    "postfix-master.cf": "postfix/master.cf",
    "postfix-sender-login": "postfix/sender_login",
    "postfix-virtual": "postfix/virtual",
    "postfix-vmailbox": "postfix/vmailbox",
    "learn.conf": "learn/learn.conf",
    "vacation.sieve": "sieve/vacation.sieve",
}

POSTFIX_CONFIG_DIR = f"{CONFIG_DIR}/postfix"
DOVECOT_CONFIG_PATH = f"{CONFIG_DIR}/dovecot/dovecot.conf"

# Keys of the tenant Secret mounted at SECRETS_DIR: only these are mounted
# (``items``), each readable by root only.
PASSWD_KEY = "passwd"  # noqa: S105 - the name of a key, not a password
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
# Postfix's password at the outbound relay (smtp_sasl_password_maps, texthash).
RELAY_SASL_KEY = "relay-sasl"
# The shared Rspamd controller's enable password, for spam training (empty when
# the server does not train): vpes-init hands it to the learn sender only.
ANTISPAM_PASSWORD_KEY = "antispam-password"  # noqa: S105 - the name of a key
SECRET_FILES: tuple[str, ...] = (
    PASSWD_KEY,
    TLS_CERT_KEY,
    TLS_KEY_KEY,
    RELAY_SASL_KEY,
    ANTISPAM_PASSWORD_KEY,
)
SECRET_MODE = 0o400
PASSWD_PATH = f"{SECRETS_DIR}/{PASSWD_KEY}"
TLS_CERT_PATH = f"{SECRETS_DIR}/{TLS_CERT_KEY}"
TLS_KEY_PATH = f"{SECRETS_DIR}/{TLS_KEY_KEY}"
RELAY_SASL_PATH = f"{SECRETS_DIR}/{RELAY_SASL_KEY}"

POSTFIX_QUEUE_DIR = f"{MAIL_DIR}/postfix-queue"
# Spam training: messages a user moved into or out of Junk wait here (on the mail
# volume, so a restart loses none) until the learn sender has posted them to the
# shared Rspamd's controller. No dot in the name: never a domain's directory.
LEARN_SPOOL_DIR = f"{MAIL_DIR}/learn-spool"
# The image's global Sieve scripts, compiled at build (the root is read-only):
# junk.sieve (sieve_before: files the edge's spam into Junk), learn-spam.sieve and
# learn-ham.sieve (imapsieve), and the one program they may pipe to.
SIEVE_DIR = "/usr/local/lib/vpes/sieve"
SIEVE_PIPE_DIR = "/usr/local/lib/vpes/sieve-pipe"
LEARN_PROGRAM = "vpes-learn"
LEARN_CONFIG_PATH = f"{CONFIG_DIR}/learn/learn.conf"
# Vacation replies: one Sieve script for every user (sieve_after), compiled into
# this directory of each user's home (the ConfigMap is read-only).
VACATION_SCRIPT_KEY = "vacation.sieve"
VACATION_SCRIPT_PATH = f"{CONFIG_DIR}/{CONFIG_FILES[VACATION_SCRIPT_KEY]}"
VACATION_BIN_DIR = "sieve-vacation"
POSTFIX_DATA_DIR = f"{RUN_DIR}/postfix"
DOVECOT_BASE_DIR = f"{RUN_DIR}/dovecot"
DOVECOT_STATE_DIR = f"{RUN_DIR}/dovecot-state"

# Dovecot's auth process runs as its default_internal_user ("dovecot", the
# Debian package's user), never as root nor as the mail user; the passwd-file
# it reads is vpes-init's copy of the Secret's, readable by that user only
# (and root).
DOVECOT_AUTH_USER = "dovecot"
DOVECOT_AUTH_DIR = f"{RUN_DIR}/dovecot-auth"
DOVECOT_PASSWD_PATH = f"{DOVECOT_AUTH_DIR}/{PASSWD_KEY}"

# Unix sockets Dovecot offers Postfix (in base_dir; never a port).
DOVECOT_LMTP_SOCKET = f"{DOVECOT_BASE_DIR}/lmtp"
DOVECOT_AUTH_SOCKET = f"{DOVECOT_BASE_DIR}/auth-postfix"
DOVECOT_QUOTA_STATUS_SOCKET = f"{DOVECOT_BASE_DIR}/quota-status"

# Where Dovecot (sieve redirect, vacation) hands outgoing mail to Postfix: a
# Postfix listener bound to loopback only, the one that lets loopback relay
# (everywhere else mynetworks is empty: a PROXY header may claim 127.0.0.1).
# Not in PORTS: nothing outside the pod reaches it.
INTERNAL_SUBMISSION = "127.0.0.1:10026"

# The usage report (vpes-usage, images/tenant): Postfix's spawn runs it as the
# mail user for each connection to this port and it writes the mail volume's
# statfs and each mailbox's Dovecot quota usage, reading nothing from the
# connection. Not in PORTS (neither the Service nor the edge has it): the
# NetworkPolicy admits only the operator to it.
USAGE_PORT = 9145
USAGE_PORT_NAME = "usage"
USAGE_COMMAND = "/usr/local/sbin/vpes-usage"

# A tenant's own host name is <pms>.<namespace>.HOSTNAME_SUFFIX: stable whatever
# domains the customer adds or removes, never resolvable on the internet, and
# it names the pod, not a customer domain (".internal" is reserved for private
# use by ICANN).
HOSTNAME_SUFFIX = "vpes.internal"


def maildir_path(address: str) -> str:
    """The home directory of a mailbox on the mail volume (Dovecot's %d/%n)."""
    local, _, domain = address.rpartition("@")
    return f"{MAIL_DIR}/{domain}/{local}"


def dkim_key_name(domain: str) -> str:
    """The Secret key holding a domain's DKIM private key."""
    return f"dkim-{domain}.key"


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
    port: int
    daemon: Daemon
    protocol: Protocol
    proxy: bool
    purpose: str


# A PROXY protocol port is its plain twin plus 10000.
PROXY_OFFSET = 10000
_PLAIN: tuple[tuple[Protocol, int, Daemon, str], ...] = (
    ("smtp", 25, "postfix", "mail for the server's domains (from the edge MX)"),
    ("submission", 587, "postfix", "submission, STARTTLS, SASL"),
    ("submissions", 465, "postfix", "submission, implicit TLS, SASL"),
    ("imap", 143, "dovecot", "IMAP, STARTTLS"),
    ("imaps", 993, "dovecot", "IMAP, implicit TLS"),
    ("pop3", 110, "dovecot", "POP3, STARTTLS"),
    ("pop3s", 995, "dovecot", "POP3, implicit TLS"),
    ("sieve", 4190, "dovecot", "ManageSieve, STARTTLS"),
)
PORTS: tuple[Port, ...] = tuple(
    Port(
        name=f"{name}-pp" if proxy else name,
        port=number + PROXY_OFFSET if proxy else number,
        daemon=daemon,
        protocol=name,
        proxy=proxy,
        purpose=f"{purpose}, after a PROXY protocol header" if proxy else purpose,
    )
    for proxy in (False, True)
    for name, number, daemon, purpose in _PLAIN
)

# What a plan's dedicated address (a LoadBalancer, `builders.network.public_service`)
# exposes: each PROXY port at its plain twin's number, by protocol. Mail clients of a
# server with a served mail host (spec.mailHost) reach these straight; its SRV records
# and set-up endpoints announce them (`dns.records.client_services`).
DEDICATED_PORTS: dict[str, int] = {p.protocol: p.port - PROXY_OFFSET for p in PORTS if p.proxy}
