"""What one line of the edge's Postfix log says, for the metrics (pure).

The exporter (``vpes_edge_metrics.py``) reads Postfix's log on its way to the
container's output and gives every line to ``classify``. A line is counted
when it is one of these, and only then:

- a refusal: ``reject:`` (smtpd and postscreen, at any stage), ``milter-reject:``
  (Rspamd, from smtpd or cleanup), or smtpd's ``SASL ... authentication failed``
  warning (the relay's logins). Its reason is one of ``REASONS``, a fixed
  set, so that no text a client sends can make a new series;
- a delivery attempt's outcome: ``status=sent|deferred|bounced|expired``.

Any other line, including one that merely mentions these words in free text
(a header, a client's HELO), is not counted: the patterns are anchored on the
daemon's own message prefix.

The relay also needs to know *whose* message Rspamd refused (its spam hold,
images/README.md "The edge image, role relay"): ``SpamLogins`` remembers the
login of each queue id from smtpd's ``client=..., sasl_username=`` line and
gives it back when cleanup logs that queue id's 5xx ``milter-reject``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass

# Why mail was refused. ``other`` takes every refusal no rule below names.
REASONS = (
    "unknown_recipient",  # 550 5.1.1 User unknown (not in the recipients map)
    "relay_denied",  # 554 5.7.1 Relay access denied (a domain nobody here hosts)
    "suspended",  # 450 4.7.1 from the access map: the server is suspended
    "postscreen",  # postscreen's own tests (pregreet and other protocol errors)
    "dnsbl",  # postscreen: the client is on the DNS blocklists
    "spam",  # Rspamd said reject (milter, 5xx): spam, GTUBE
    "milter_tempfail",  # Rspamd said later or did not answer (milter, 4xx)
    "auth_failed",  # SASL login failed (the relay: a tenant's password)
    "sender_not_owned",  # the relay: a login sending as another server's domain
    "held",  # the relay: the server's outbound mail is held
    "over_limit",  # the relay: the plan's recipients an hour are used up
    "bad_sender",  # other "Sender address rejected" (non-FQDN sender...)
    "bad_recipient",  # other "Recipient address rejected" (non-FQDN...)
    "bad_helo",  # "Helo command rejected"
    "protocol",  # pipelining abuse, multi-recipient bounce, too large
    "other",
)
# What became of one delivery attempt (one recipient).
STATUSES = ("sent", "deferred", "bounced", "expired")

# "<program>[pid]: <message>", where program is e.g. postfix/mx/smtpd.
_PREFIX = re.compile(r"(?:^|\s)(?P<program>[\w.-]+(?:/[\w.-]+)*)\[\d+\]: (?P<message>.*)$")
# smtpd and postscreen: "NOQUEUE: reject: RCPT from client[ip]: 550 5.1.1 <a@b>: ..."
# (smtpd has a queue id instead of NOQUEUE once the message has one).
_REJECT = re.compile(
    r"^(?:NOQUEUE|[0-9A-Za-z]+): (?P<kind>reject|milter-reject): "
    r"(?P<stage>[A-Z][A-Z-]*) from \S+: "
    r"(?:(?P<code>[245]\d\d) )?(?P<dsn>[245])\.\d{1,3}\.\d{1,3}\b(?P<text>.*)$"
)
_SASL = re.compile(r"^warning: \S+: SASL \S+ authentication failed")
# A delivery agent's "QID: to=<a@b>, relay=..., dsn=2.0.0, status=sent (...)", and
# qmgr's "QID: from=<a@b>, status=expired, returned to sender".
_STATUS = re.compile(
    r"^[0-9A-Za-z]+: .*?(?:, dsn=\d\.\d{1,3}\.\d{1,3}, status=(?P<status>sent|deferred|bounced)"
    r"|, status=(?P<expired>expired), returned to sender)"
)
_DELIVERY_DAEMONS = frozenset(
    {"smtp", "lmtp", "error", "retry", "discard", "qmgr", "local", "virtual", "pipe"}
)

# Reject texts (the part after the status codes, up to "; from=<"), first match wins.
_TEXT_RULES: tuple[tuple[str, str], ...] = (
    ("User unknown", "unknown_recipient"),
    ("Relay access denied", "relay_denied"),
    ("this mail server is suspended", "suspended"),
    (" blocked using ", "dnsbl"),
    ("not owned by user", "sender_not_owned"),
    ("outbound mail is held", "held"),
    ("recipients an hour", "over_limit"),
    ("Sender address rejected", "bad_sender"),
    ("Recipient address rejected", "bad_recipient"),
    ("Helo command rejected", "bad_helo"),
    ("Improper use of SMTP command pipelining", "protocol"),
    ("Multi-recipient bounce", "protocol"),
    ("Message size exceeds", "protocol"),
)


@dataclass(frozen=True)
class Event:
    """One counted line: a refusal (``reason``) or a delivery (``status``)."""

    reason: str = ""
    status: str = ""


def classify(line: str) -> Event | None:
    """The count one log line makes, or None for a line that counts nothing."""
    prefix = _PREFIX.search(line)
    if prefix is None:
        return None
    program = prefix["program"]
    if not program.startswith("postfix"):
        return None
    daemon = program.rsplit("/", 1)[-1]
    message = prefix["message"]
    reject = _REJECT.match(message)
    if reject is not None:
        return Event(reason=_reason(daemon, reject))
    if daemon == "smtpd" and _SASL.match(message):
        return Event(reason="auth_failed")
    status = _STATUS.match(message) if daemon in _DELIVERY_DAEMONS else None
    if status is not None:
        return Event(status=status["status"] or status["expired"])
    return None


def _reason(daemon: str, reject: re.Match[str]) -> str:
    # Postfix's words only: not the envelope after "; from=<", not the address
    # before the last ">: " (e.g. "<a@b>: Recipient address rejected: ..."),
    # both of which the client chose.
    text = reject["text"].split("; from=<", 1)[0]
    text = text.rsplit(">: ", 1)[-1]
    if reject["kind"] == "milter-reject":
        return "spam" if reject["dsn"] == "5" else "milter_tempfail"
    for needle, reason in _TEXT_RULES:
        if needle in text:
            return reason
    if daemon == "postscreen":
        return "postscreen"
    return "other"


# smtpd: "QID: client=host[ip], sasl_method=PLAIN, sasl_username=ns/name" (the
# relay logs it once the message has a queue id, after its first accepted RCPT).
_CLIENT = re.compile(
    r"^(?P<qid>[0-9A-Za-z]+): client=\S+, sasl_method=\S+, sasl_username=(?P<login>[^,\s]+)"
)
# qmgr: "QID: removed" (delivered, bounced or expired: the id may come again).
_REMOVED = re.compile(r"^(?P<qid>[0-9A-Za-z]+): removed$")


class SpamLogins:
    """Which login sent each message whose queue id the relay's log names, to say
    whose message a 5xx ``milter-reject`` (Rspamd: spam) refused. Keeps at most
    ``limit`` ids (the oldest go first): a message is in smtpd's hands for
    seconds, so only a flood of sessions that never finish could push one out."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self.logins: OrderedDict[str, str] = OrderedDict()

    def observe(self, line: str) -> str | None:
        """The login whose message ``line`` says Rspamd refused, else None."""
        prefix = _PREFIX.search(line)
        if prefix is None or not prefix["program"].startswith("postfix"):
            return None
        daemon = prefix["program"].rsplit("/", 1)[-1]
        message = prefix["message"]
        if daemon == "smtpd" and (client := _CLIENT.match(message)) is not None:
            self.logins[client["qid"]] = client["login"]
            self.logins.move_to_end(client["qid"])
            while len(self.logins) > self.limit:
                self.logins.popitem(last=False)
            return None
        if (removed := _REMOVED.match(message)) is not None:
            self.logins.pop(removed["qid"], None)
            return None
        reject = _REJECT.match(message)
        if reject is None or reject["kind"] != "milter-reject":
            return None
        qid = message.split(":", 1)[0]
        login = self.logins.pop(qid, None)
        return login if reject["dsn"] == "5" else None
