"""Outbound limits and spam: the edge relay's counts become holds on the servers,
and an admin's annotation releases them.

Every `relay_poll_seconds` the operator reads the relay's ``GET /status`` (one
request for the whole fleet). A server the relay reports ``over_limit`` or
``spam_hold`` (under the release token the operator last gave it: a count from
before a release is not held again) is held: ``status.outbound`` says so and
why (``heldFor``: Limit or Spam), Deliverable turns False (OutboundLimitReached
or OutboundSpamSuspected, with what to do and the release command), its
transition is an event, and the next maps name it in ``held`` (the relay then
defers all its mail, which waits in the server's own queue). Spam wins when
both are reported: it is the one a person must look at. The hold lives in the
server's status, so it survives the relay and its Redis.

Release: ``kubectl annotate pms <name> vpes.io/release-outbound=<token>``. A
token other than status.outbound.releasedToken lifts the hold, is written to
the status and then to the maps' ``limits`` (the relay forgets the count),
Deliverable turns True, and an event says who was released. Releases are
looked for every second in what the watch delivered (no API call).

The relay unreachable (or answering nonsense): holds stay as they are, nothing
new is held, ``vpes_relay_status_up`` is 0 and one Warning event on the edge's
maps ConfigMap says the relay's state is unknown (one Normal event when it is back).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import metrics
from .builders.meta import server_reference
from .clients.kube import ApiError, Kube
from .clients.status import update_server_status
from .conditions import Cond, Event, find, set_condition
from .edge.relay import NO_TOKEN, RELEASE_ANNOTATION, token
from .models.conditions import ConditionType, Reason
from .models.server import HoldCause, Outbound, PersonalMailServer, PersonalMailServerStatus
from .settings import OperatorSettings

log = logging.getLogger(__name__)
Poster = Callable[[dict[str, Any], list[Event]], None]
TIMEOUT = 5.0
RELAYING = Cond(
    ConditionType.DELIVERABLE,
    True,
    Reason.RELAYING,
    "outbound mail goes through the edge's relay, within the plan's hourly limit",
)


class RelayStatusError(ValueError):
    """The relay's /status could not be read or made no sense."""


@dataclass(frozen=True)
class Seen:
    """One server in the relay's /status."""

    recipients: int
    limit: int
    token: str
    over_limit: bool
    spam: int = 0  # messages the relay's antispam refused in the window
    spam_hold: bool = False  # as many as the relay's threshold, or more

    @property
    def cause(self) -> HoldCause | None:
        """Why the server should be held (None: it should not)."""
        if self.spam_hold:
            return HoldCause.SPAM
        return HoldCause.LIMIT if self.over_limit else None


def parse_status(doc: Any) -> dict[str, Seen]:
    if not isinstance(doc, dict) or not isinstance(doc.get("servers"), dict):
        raise RelayStatusError("no 'servers' object in the relay's status")
    out: dict[str, Seen] = {}
    for key, raw in doc["servers"].items():
        if not isinstance(raw, dict) or "/" not in str(key):
            continue
        try:
            out[str(key)] = Seen(
                recipients=int(raw.get("recipients", 0)),
                limit=int(raw.get("limit", 0)),
                token=str(raw.get("token") or NO_TOKEN),
                over_limit=bool(raw.get("over_limit", False)),
                spam=int(raw.get("spam", 0)),
                spam_hold=bool(raw.get("spam_hold", False)),
            )
        except (TypeError, ValueError):
            continue
    return out


def read_status(url: str) -> dict[str, Seen]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:  # noqa: S310 (the chart's URL)
            return parse_status(json.loads(resp.read()))
    except (OSError, ValueError) as e:
        raise RelayStatusError(str(e)) from e


def release_command(server: PersonalMailServer) -> str:
    meta = server.metadata
    return (
        f"kubectl annotate pms {meta.name} -n {meta.namespace} "
        f"{RELEASE_ANNOTATION}=$(date +%s) --overwrite"
    )


def limit_reached(server: PersonalMailServer, seen: Seen) -> Cond:
    return Cond(
        ConditionType.DELIVERABLE,
        False,
        Reason.OUTBOUND_LIMIT_REACHED,
        f"sent {seen.recipients} recipients in the last hour, the plan's limit is "
        f"{seen.limit}: outbound mail is held (it waits in the server's queue) until "
        f"released with `{release_command(server)}`",
    )


def spam_suspected(server: PersonalMailServer, seen: Seen) -> Cond:
    return Cond(
        ConditionType.DELIVERABLE,
        False,
        Reason.OUTBOUND_SPAM_SUSPECTED,
        f"the relay's antispam refused {seen.spam} of its messages in the last hour as "
        "spam: outbound mail is held (it waits in the server's queue). Look at what the "
        "server sent (its users' Sent folders, the bounces their senders got: a stolen "
        "password, a web form sending spam) and stop it, then release with "
        f"`{release_command(server)}`",
    )


def hold(
    current: PersonalMailServer, seen: Seen, now: dt.datetime
) -> PersonalMailServerStatus | None:
    """The status with the server held for ``seen.cause`` (None: no cause, held already,
    or the relay counted under a token older than the last release)."""
    before = current.status
    out = before.outbound or Outbound()
    cause = seen.cause
    if cause is None or out.held or seen.token != token(out.released_token):
        return None
    key = f"{current.metadata.namespace}/{current.metadata.name}"
    if cause == HoldCause.SPAM:
        reason = (
            f"outbound mail is held: {key} sent {seen.spam} messages in an hour that the "
            "relay's antispam refused as spam"
        )
        cond = spam_suspected(current, seen)
    else:
        reason = f"{key} reached its limit of {seen.limit} recipients an hour"
        cond = limit_reached(current, seen)
    held = out.model_copy(
        update={
            "recipients": seen.recipients,
            "limit": seen.limit,
            "spam": seen.spam,
            "held": True,
            "held_for": cause,
            "held_since": now,
            "reason": reason,
        }
    )
    conditions = set_condition(before.conditions, cond, generation=current.generation, now=now)
    return before.model_copy(update={"outbound": held, "conditions": conditions})


def release(
    current: PersonalMailServer, value: str, now: dt.datetime
) -> PersonalMailServerStatus | None:
    """The status with the hold lifted and `value` as the release token (None: that
    token was acted on already)."""
    before = current.status
    out = before.outbound or Outbound()
    wanted = token(value)
    if wanted == token(out.released_token):
        return None
    released = out.model_copy(
        update={
            "held": False,
            "held_for": None,
            "held_since": None,
            "reason": None,
            "released_token": wanted,
        }
    )
    conditions = set_condition(before.conditions, RELAYING, generation=current.generation, now=now)
    return before.model_copy(update={"outbound": released, "conditions": conditions})


def with_relaying(
    current: PersonalMailServer, before: PersonalMailServerStatus, now: dt.datetime
) -> PersonalMailServerStatus:
    """`before` with Deliverable True where the server has none yet (a new server)."""
    if find(before.conditions, ConditionType.DELIVERABLE) is not None:
        return before
    conditions = set_condition(before.conditions, RELAYING, generation=current.generation, now=now)
    return before.model_copy(update={"conditions": conditions})


def to_release(servers: Iterable[PersonalMailServer]) -> list[tuple[PersonalMailServer, str]]:
    """The servers whose release annotation the operator has not acted on."""
    out = []
    for server in servers:
        value = server.metadata.annotations.get(RELEASE_ANNOTATION)
        if server.metadata.deletion_timestamp or value is None:
            continue
        done = server.status.outbound.released_token if server.status.outbound else None
        if token(value) != token(done):
            out.append((server, value))
    return out


@dataclass
class OutboundPoll:
    kube: Kube
    settings: OperatorSettings
    post: Poster
    fleet: Callable[[], list[PersonalMailServer]]
    read: Callable[[str], dict[str, Seen]] = read_status
    maps_reference: Callable[[], dict[str, Any]] = dict
    reachable: bool | None = None

    def poll(self) -> int:
        """Read the relay's status and hold who went over; how many were held (-1: the
        relay's state is unknown)."""
        try:
            seen = self.read(self.settings.relay_status_url)
        except RelayStatusError as e:
            self.unknown(str(e))
            return -1
        self.known()
        servers = {f"{s.metadata.namespace}/{s.metadata.name}": s for s in self.fleet()}
        metrics.OUTBOUND_RECIPIENTS.clear()
        metrics.OUTBOUND_SPAM.clear()
        for key, entry in seen.items():
            if key in servers:
                namespace, name = key.split("/", 1)
                metrics.OUTBOUND_RECIPIENTS.labels(namespace, name).set(entry.recipients)
                metrics.OUTBOUND_SPAM.labels(namespace, name).set(entry.spam)
        held = 0
        for key, entry in sorted(seen.items()):
            server = servers.get(key)
            if server is None or entry.cause is None:
                continue
            if hold(server, entry, dt.datetime.now(dt.UTC)) is None:
                continue  # from the watch's view: nothing to do (re-checked on write)
            held += self.write(server, _holding(entry))
        self.gauges()
        return held

    def releases(self) -> int:
        released = 0
        for server, value in to_release(self.fleet()):
            if self.write(server, _releasing(value)):
                released += 1
                message = f"outbound mail released ({RELEASE_ANNOTATION}={token(value)})"
                event = Event("Normal", Reason.OUTBOUND_RELEASED, message)
                self.post(self.reference(server), [event])
        if released:
            self.gauges()
        return released

    def write(self, server: PersonalMailServer, change: Change) -> int:
        meta = server.metadata

        def mutate(current: PersonalMailServer) -> PersonalMailServerStatus | None:
            if current.metadata.uid != meta.uid or current.metadata.deletion_timestamp:
                return None
            return change(current)

        try:
            written = update_server_status(self.kube, meta.namespace, meta.name, mutate)
        except ApiError as e:
            log.warning("outbound state of %s/%s not written: %s", *_who(server), e.message)
            return 0
        if written.events:
            self.post(self.reference(server), written.events)
        return 1 if written.written else 0

    def reference(self, server: PersonalMailServer) -> dict[str, Any]:
        meta = server.metadata
        return server_reference(meta.name, meta.namespace, meta.uid)

    def gauges(self) -> None:
        metrics.OUTBOUND_HELD.clear()
        for server in self.fleet():
            out = server.status.outbound
            meta = server.metadata
            if out is None or not out.held:
                metrics.OUTBOUND_HELD.labels(meta.namespace, meta.name, "none").set(0)
                continue
            cause = (out.held_for or HoldCause.LIMIT).lower()  # held before the field: Limit
            metrics.OUTBOUND_HELD.labels(meta.namespace, meta.name, cause).set(1)

    def unknown(self, why: str) -> None:
        metrics.RELAY_STATUS_UP.set(0)
        if self.reachable is False:
            return
        log.warning("the relay's status is unknown (holds stay as they are): %s", why)
        message = f"the edge relay's status does not answer, holds stay as they are: {why}"
        self.post(self.maps_reference(), [Event("Warning", Reason.RELAY_STATUS_UNKNOWN, message)])
        self.reachable = False

    def known(self) -> None:
        metrics.RELAY_STATUS_UP.set(1)
        if self.reachable is False:
            message = "the edge relay's status answers again"
            self.post(self.maps_reference(), [Event("Normal", Reason.RELAY_STATUS_BACK, message)])
        self.reachable = True


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


Change = Callable[[PersonalMailServer], PersonalMailServerStatus | None]


def _holding(seen: Seen) -> Change:
    return lambda current: hold(current, seen, _now())


def _releasing(value: str) -> Change:
    return lambda current: release(current, value, _now())


def _who(server: PersonalMailServer) -> tuple[str, str]:
    return server.metadata.namespace, server.metadata.name
