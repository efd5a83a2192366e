"""Keep bearer values out of the service's log.

Two things in a URL act as credentials here: the one-time password link
(`/password/<namespace>.<secret>`) and the signup key (`key=…`, which lets its
holder see the server's state and ask for that link). The access log prints
every request's path and query, so every log record passes through `Redact` on
the way out, whichever logger wrote it. Checkout Session ids (`cs_…`) prove
nothing any more but are kept out too. Stripe keys and webhook secrets are never
logged on purpose; they are redacted too in case an error message echoes one.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
_PATTERNS = [
    re.compile(r"(/password/)[^\s\"'?#]+"),
    re.compile(r"(session_id=)[^\s\"'&#]+"),
    re.compile(r"([?&;]key=)[^\s\"'&#]+"),
    re.compile(r"\b(cs_(?:test_|live_)?)[A-Za-z0-9_]+"),
    re.compile(r"\b(vpes-c-[0-9a-f]{16}\.)[A-Za-z0-9_-]+"),
    # Stripe keys and webhook secrets, should an error message ever echo one.
    re.compile(r"\b((?:sk|rk)_(?:test|live)_|whsec_)[A-Za-z0-9_]+"),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class Redact(logging.Filter):
    """Rewrites a record's message (formatted once, arguments dropped) and its
    traceback with `redact`."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def configure(level: int = logging.INFO) -> None:
    """Root logging for the service: one format, every handler redacting."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # The stripe library logs every request at INFO, and error bodies verbatim.
    logging.getLogger("stripe").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Redact) for f in handler.filters):
            handler.addFilter(Redact())
