"""The outbound relay's policy: who may send how many recipients an hour, and
how many of its messages the antispam may refuse before it is held.

Pure parts of ``vpes-edge relay``'s policy service (images/README.md, "The
edge image, role relay"): the operator's ``limits`` and ``held`` maps, the
decision for one RCPT, the Postfix policy delegation protocol (and the one
request of our own, ``SPAM_REQUEST``: a message Rspamd refused), and the
``/status`` and ``/metrics`` documents. The server around them (Redis, the
sockets) is ``vpes_relay_server``; the Redis side of the sliding windows is
the scripts ``WINDOW_SCRIPT`` and ``SPAM_SCRIPT`` below, run atomically by
Redis so that every replica sees one count.

Runs on Debian's python3 in the image (stdlib only here); the unit tests
import it (tests/unit/test_relay_policy.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

WINDOW_SECONDS = 3600
KEY_PREFIX = "vpes:relay:"
SERVER_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?/[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
TOKEN_RE = re.compile(r"^[!-~]{1,128}$")
RESULTS = ("accepted", "over_limit", "held", "refused")
DEFAULT_SPAM_THRESHOLD = 5
# Not Postfix's: sent by the log reader (vpes_edge_metrics.py, role relay) for each
# message Rspamd's milter refused with a 5xx, with the message's login.
SPAM_REQUEST = "vpes_spam_event"


class MapError(ValueError):
    """A map line that cannot be used; the message names the line."""


@dataclass(frozen=True)
class Limit:
    recipients: int
    token: str


@dataclass(frozen=True)
class Maps:
    """What the policy needs of one version of the operator's maps."""

    version: str = ""
    limits: Mapping[str, Limit] = field(default_factory=dict)
    held: Mapping[str, str] = field(default_factory=dict)


def _lines(text: str) -> Iterable[tuple[int, str]]:
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield number, line


def _server(name: str, where: str) -> str:
    if not SERVER_RE.match(name):
        raise MapError(f"{where}: {name!r} is not a server (namespace/name)")
    return name


def parse_limits(text: str) -> dict[str, Limit]:
    """``ns/name <recipients-per-hour> <release-token>`` per line."""
    limits: dict[str, Limit] = {}
    for number, line in _lines(text):
        where = f"limits line {number}"
        parts = line.split()
        if len(parts) != 3:
            raise MapError(f"{where}: expected 'ns/name recipients-per-hour token', got {line!r}")
        server = _server(parts[0], where)
        if not parts[1].isdigit():
            raise MapError(f"{where}: {parts[1]!r} is not a number of recipients")
        if not TOKEN_RE.match(parts[2]):
            raise MapError(f"{where}: {parts[2]!r} is not a release token")
        if server in limits:
            raise MapError(f"{where}: {server} is listed twice")
        limits[server] = Limit(int(parts[1]), parts[2])
    return limits


def parse_held(text: str) -> dict[str, str]:
    """``ns/name <reason text...>`` per line."""
    held: dict[str, str] = {}
    for number, line in _lines(text):
        where = f"held line {number}"
        server, _, reason = line.partition(" ")
        _server(server, where)
        reason = " ".join(reason.split())
        if not reason:
            raise MapError(f"{where}: {server} has no reason")
        if any(ord(c) < 32 or ord(c) > 126 for c in reason):
            raise MapError(f"{where}: the reason may hold only printable ASCII")
        if server in held:
            raise MapError(f"{where}: {server} is listed twice")
        held[server] = reason
    return held


def parse_maps(files: Mapping[str, str]) -> Maps:
    """The policy's maps from the files ``limits``, ``held``, ``version``."""
    return Maps(
        version=files.get("version", "").strip(),
        limits=parse_limits(files.get("limits", "")),
        held=parse_held(files.get("held", "")),
    )


# --- one RCPT ---------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What the policy answers Postfix, and how the recipient is counted."""

    action: str
    result: str  # one of RESULTS


def before_count(maps: Maps, server: str) -> Decision | Limit:
    """The answer that needs no count (held, unknown), or the server's limit."""
    if not server:
        return Decision("554 5.7.1 authentication required", "refused")
    if server in maps.held:
        return Decision(f"450 4.7.1 {maps.held[server]}", "held")
    limit = maps.limits.get(server)
    if limit is None:
        return Decision(
            f"454 4.7.1 {server} is not known to the relay yet, try again later", "refused"
        )
    return limit


def after_count(server: str, limit: Limit, allowed: bool) -> Decision:
    """The answer once the window said whether one more recipient fits."""
    if allowed:
        return Decision("DUNNO", "accepted")
    return Decision(
        f"450 4.7.1 <{server}> reached its limit of {limit.recipients} recipients an hour",
        "over_limit",
    )


REDIS_DOWN = Decision("451 4.3.0 the relay cannot count recipients now, try again later", "refused")


def keys(server: str) -> tuple[str, str, str, str]:
    """Redis keys of a server: the window's recipients, its deferrals, its token, and
    the messages the antispam refused."""
    return (
        f"{KEY_PREFIX}rcpt:{server}",
        f"{KEY_PREFIX}deferred:{server}",
        f"{KEY_PREFIX}token:{server}",
        f"{KEY_PREFIX}spam:{server}",
    )


# Atomic in Redis. KEYS: rcpt, deferred, token, spam (keys()). ARGV: now,
# window, limit, token, a unique member. A token other than the stored one
# forgets the server's counts, spam included (the admin released it).
# Returns {allowed, count}.
WINDOW_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
if redis.call('GET', KEYS[3]) ~= ARGV[4] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
end
redis.call('SET', KEYS[3], ARGV[4], 'EX', window * 2)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count + 1 <= tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now, ARGV[5])
  count = count + 1
  allowed = 1
else
  redis.call('ZADD', KEYS[2], now, ARGV[5])
end
redis.call('EXPIRE', KEYS[1], window + 60)
redis.call('EXPIRE', KEYS[2], window + 60)
return {allowed, count}
"""

# One message of the server that Rspamd refused (``SPAM_REQUEST``), in the same
# style. KEYS: as WINDOW_SCRIPT's. ARGV: now, window, token, a unique member.
# Returns the server's refused messages in the window, this one included.
SPAM_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
if redis.call('GET', KEYS[3]) ~= ARGV[3] then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
end
redis.call('SET', KEYS[3], ARGV[3], 'EX', window * 2)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
redis.call('ZADD', KEYS[4], now, ARGV[4])
redis.call('EXPIRE', KEYS[4], window + 60)
return redis.call('ZCARD', KEYS[4])
"""


def spam_threshold(value: str | None) -> int:
    """``VPES_SPAM_HOLD_THRESHOLD``: refused messages an hour that hold a server
    (0: none ever does). Unset: ``DEFAULT_SPAM_THRESHOLD``."""
    text = (value or "").strip()
    if not text:
        return DEFAULT_SPAM_THRESHOLD
    if not text.isdigit():
        raise ValueError(f"VPES_SPAM_HOLD_THRESHOLD={text!r} is not a number of messages")
    return int(text)


def spam_hold(spam: int, threshold: int) -> bool:
    """Whether ``spam`` refused messages in the window are enough to hold a server."""
    return threshold > 0 and spam >= threshold


# --- the policy delegation protocol -----------------------------------------


def parse_request(lines: Iterable[str]) -> dict[str, str]:
    """``name=value`` lines (without the empty line that ends a request)."""
    request: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition("=")
        if sep:
            request[name.strip()] = value
    return request


def response(action: str) -> bytes:
    return f"action={action}\n\n".encode()


# --- /status and /metrics ---------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """A server's counts in the window (all 0 while Redis holds them under another
    token than the maps': the next RCPT forgets them)."""

    recipients: int
    deferred: int
    spam: int = 0


def status(maps: Maps, usage: Mapping[str, Usage], threshold: int = 0) -> dict[str, object]:
    """The ``GET /status`` document: servers with activity in the window; ``spam``
    messages refused by the antispam, ``spam_hold`` once they reach ``threshold``."""
    servers: dict[str, object] = {}
    for server in sorted(usage):
        used = usage[server]
        if used.recipients == 0 and used.deferred == 0 and used.spam == 0:
            continue
        limit = maps.limits.get(server, Limit(0, "-"))
        servers[server] = {
            "recipients": used.recipients,
            "limit": limit.recipients,
            "token": limit.token,
            "over_limit": used.deferred > 0,
            "deferred": used.deferred,
            "spam": used.spam,
            "spam_hold": spam_hold(used.spam, threshold),
        }
    return {
        "maps_version": maps.version,
        "window_seconds": WINDOW_SECONDS,
        "spam_threshold": threshold,
        "servers": servers,
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics(
    maps: Maps,
    totals: Mapping[str, int],
    over_limit: int,
    queue: int | None,
    spam: tuple[int, int] = (0, 0),
) -> str:
    """The ``GET /metrics`` text (Prometheus exposition format). ``spam``: the refused
    messages this replica counted, and the servers at the spam threshold."""
    out = [
        "# HELP vpes_relay_recipients_total RCPTs the policy answered, by result.",
        "# TYPE vpes_relay_recipients_total counter",
    ]
    out += [f'vpes_relay_recipients_total{{result="{r}"}} {totals.get(r, 0)}' for r in RESULTS]
    out += [
        "# HELP vpes_relay_servers_over_limit Servers deferred for their limit in the window.",
        "# TYPE vpes_relay_servers_over_limit gauge",
        f"vpes_relay_servers_over_limit {over_limit}",
        "# HELP vpes_relay_spam_total Messages the antispam refused (5xx), counted here.",
        "# TYPE vpes_relay_spam_total counter",
        f"vpes_relay_spam_total {spam[0]}",
        "# HELP vpes_relay_servers_spam_hold Servers at the spam threshold in the window.",
        "# TYPE vpes_relay_servers_spam_hold gauge",
        f"vpes_relay_servers_spam_hold {spam[1]}",
    ]
    if queue is not None:
        out += [
            "# HELP vpes_relay_queue_messages Messages in the relay's Postfix queue.",
            "# TYPE vpes_relay_queue_messages gauge",
            f"vpes_relay_queue_messages {queue}",
        ]
    out += [
        "# HELP vpes_relay_maps_version_info The loaded maps' version.",
        "# TYPE vpes_relay_maps_version_info gauge",
        f'vpes_relay_maps_version_info{{version="{_label(maps.version)}"}} 1',
    ]
    return "\n".join(out) + "\n"
