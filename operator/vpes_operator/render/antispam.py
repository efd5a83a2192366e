"""What a tenant does with the edge's spam verdict: Junk filing and training.

The plan's ``features.antispam`` level decides it:

- **Off**: nothing at the tenant (the edge does not scan the server's mail
  either): no global Sieve script, no training.
- **Standard** and **Strict**: a global Sieve script that runs before the
  user's own (``sieve_before``) files mail carrying the edge's verdict
  (``X-Spam: Yes``, added by Rspamd's milter at the MX) into Junk and stops, so
  a user's script cannot move it back to INBOX. With training configured
  (``settings.antispam_controller_url``), imapsieve pipes a message a user
  moves into Junk (COPY, MOVE, APPEND) to ``vpes-learn spam <user>`` and one
  moved out of Junk to anything but Trash to ``vpes-learn ham <user>``; it
  queues the message on the mail volume (the learn spool, bounded below) and
  the sender posts it to the controller's ``/learnspam`` or ``/learnham`` with
  ``Deliver-To: <user>``: that user's own Bayes.

The header is trusted only from the edge: the MX drops any ``X-Spam`` header a
sender wrote before Rspamd adds its own, and the tenant drops it on every
listener but port 25 (which only the edge's pods reach): see ``UNTRUSTED_HEADER_CHECKS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vpes_operator.models.plan import AntispamLevel, MailPlanSpec
from vpes_operator.quantity import QuantityError, parse_bytes
from vpes_operator.settings import OperatorSettings

from .checks import RenderError
from .layout import LEARN_PROGRAM, LEARN_SPOOL_DIR, SIEVE_DIR, SIEVE_PIPE_DIR

# The header Rspamd's milter adds at the edge's "add header" action (its proxy
# worker's default spam_header), and the one value it writes.
SPAM_HEADER = "X-Spam"
# Postfix header_checks (a Postfix 3.7 inline regexp table) for the tenant's
# listeners that mail reaches without passing the edge's MX (submission, the
# PROXY ports of a dedicated address): a sender's own X-Spam header is dropped
# there, so it can neither file a message into Junk nor claim a verdict.
UNTRUSTED_HEADER_CHECKS = "regexp:{ {/^X-Spam:/ IGNORE} }"

JUNK_SCRIPT = f"{SIEVE_DIR}/junk.sieve"
LEARN_SPAM_SCRIPT = f"{SIEVE_DIR}/learn-spam.sieve"
LEARN_HAM_SCRIPT = f"{SIEVE_DIR}/learn-ham.sieve"

# The learn spool's bounds besides its size: entries, and bytes of one message
# (a larger one is learned from its first bytes: the text comes first).
SPOOL_MESSAGES = 1000
MESSAGE_LIMIT_BYTES = 2 * 1024 * 1024

# http(s)://host[:port], no path: the sender appends /learnspam or /learnham.
_URL_RE = re.compile(r"https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?")
# What a password may hold to go into the sender's curl configuration unquoted
# (the chart's are random letters and digits).
_PASSWORD_RE = re.compile(r"[A-Za-z0-9._~+/=-]{12,256}")


@dataclass(frozen=True)
class Training:
    """Spam training: where the learn sender posts, and the spool's bounds."""

    controller_url: str
    spool_limit_bytes: int
    spool_limit_messages: int
    message_limit_bytes: int
    # Free space the spool leaves on the mail volume (Postfix's queue_minfree):
    # below it a message is not queued for learning (mail comes first).
    reserve_bytes: int


@dataclass(frozen=True)
class AntispamContext:
    level: AntispamLevel
    training: Training | None

    @property
    def junk_filing(self) -> bool:
        return self.level != AntispamLevel.OFF


def build(plan: MailPlanSpec, settings: OperatorSettings, reserve_bytes: int) -> AntispamContext:
    """The server's antispam context from its plan's level and the platform's settings."""
    level = plan.features.antispam
    url = settings.antispam_controller_url.rstrip("/")
    if level == AntispamLevel.OFF or not url:
        return AntispamContext(level, None)
    if not _URL_RE.fullmatch(url):
        raise RenderError(
            f"settings.antispam_controller_url {settings.antispam_controller_url!r} must be "
            "http://host[:port] (the Rspamd controller, no path)"
        )
    try:
        limit = parse_bytes(settings.antispam_learn_spool_limit)
    except QuantityError as e:
        raise RenderError(f"settings.antispam_learn_spool_limit: {e}") from None
    if limit < 64 * 1024:
        raise RenderError("settings.antispam_learn_spool_limit must be at least 64Ki")
    return AntispamContext(
        level,
        Training(
            controller_url=url,
            spool_limit_bytes=limit,
            spool_limit_messages=SPOOL_MESSAGES,
            message_limit_bytes=min(MESSAGE_LIMIT_BYTES, limit // 4),
            reserve_bytes=reserve_bytes,
        ),
    )


def controller_password(value: str) -> str:
    """The controller password, checked (it goes into a configuration file unquoted)."""
    value = value.strip()
    if not _PASSWORD_RE.fullmatch(value):
        raise RenderError(
            "the antispam controller password (settings.antispam_controller_password_file) "
            "must be 12 to 256 letters, digits or - . _ ~ + / = (the chart makes one)"
        )
    return value


def values(ctx: AntispamContext) -> dict[str, object]:
    """What the templates print (dovecot.conf, learn.conf)."""
    t = ctx.training
    return {
        "junk_filing": ctx.junk_filing,
        "junk_script": JUNK_SCRIPT,
        "spam_header": SPAM_HEADER,
        "untrusted_header_checks": UNTRUSTED_HEADER_CHECKS,
        "training": t is not None,
        "learn": {
            "spam_script": LEARN_SPAM_SCRIPT,
            "ham_script": LEARN_HAM_SCRIPT,
            "pipe_dir": SIEVE_PIPE_DIR,
            "program": LEARN_PROGRAM,
            "spool": LEARN_SPOOL_DIR,
            "url": t.controller_url if t else "",
            "spool_limit_bytes": t.spool_limit_bytes if t else 0,
            "spool_limit_messages": t.spool_limit_messages if t else 0,
            "message_limit_bytes": t.message_limit_bytes if t else 0,
            "reserve_bytes": t.reserve_bytes if t else 0,
        },
    }
