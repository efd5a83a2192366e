"""Which domains vpes hosts (every domain in some PersonalMailServer's spec.domains),
the OpenPGP keys their mailboxes publish (WKD), and which server has each domain
(for the calendar proxy, dav.py), from a watch of the servers and the MailPlans.

The only reads the web service makes (its ServiceAccount may get, list and watch
servers and plans, nothing else). A domain listed by several servers belongs to the
one the edge routes it to (`vpes_operator.edge.routing`: the oldest).

Two informers (`vpes_operator.clients.informer`: list, then watch) keep each server
and plan, by (namespace, name), reduced to the fields the index reads (`slim_server`,
`slim_plan`: no status, no mailbox but its published key). An event that changes none
of those (a status update, most of them) changes nothing; one that does marks the
index stale, and one thread rebuilds it `settle` seconds later (a burst of changes is
one rebuild). A request reads the last index built and never waits for a list or a
rebuild; before the first lists of both arrived, `HostedUnavailableError` (503). A
watch that fails keeps the objects it had, and its informer lists again (back-off).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vpes_operator import API_VERSION
from vpes_operator.clients.informer import Informer, Source
from vpes_operator.dns import records
from vpes_operator.edge import routing
from vpes_operator.models import KINDS
from vpes_operator.models.server import PersonalMailServer

from .. import openpgp

log = logging.getLogger("vpes.web")

JSON = dict[str, Any]
SERVERS, PLANS = "PersonalMailServer", "MailPlan"


class HostedUnavailableError(Exception):
    """The servers and plans have not been listed yet."""


def collection_path(kind: str) -> str:
    """The path of every object of `kind` (all namespaces)."""
    plural = next(k.plural for k in KINDS if k.kind == kind)
    return f"/apis/{API_VERSION}/{plural}"


def slim_server(obj: JSON) -> JSON:
    """What the index reads of a server: its name, creation and deletion, spec.domains,
    spec.plan, spec.mailHost and the mailboxes that publish a key (address and key)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    keep = ("name", "namespace", "creationTimestamp", "deletionTimestamp")
    mailboxes = [
        {"address": m.get("address"), "openpgpKey": m["openpgpKey"]}
        for m in spec.get("mailboxes") or []
        if isinstance(m, dict) and m.get("openpgpKey")
    ]
    slim: JSON = {"domains": spec.get("domains") or [], "plan": spec.get("plan", "")}
    if spec.get("mailHost"):
        slim["mailHost"] = spec["mailHost"]
    if mailboxes:
        slim["mailboxes"] = mailboxes
    return {"metadata": {k: meta[k] for k in keep if meta.get(k)}, "spec": slim}


# The plan's features the index reads.
CALENDAR, DEDICATED = "calendar", "dedicatedAddress"


def slim_plan(obj: JSON) -> JSON:
    """What the index reads of a plan: its name, features.calendar and
    features.dedicatedAddress."""
    name = (obj.get("metadata") or {}).get("name", "")
    features = (obj.get("spec") or {}).get("features") or {}
    return {
        "metadata": {"name": name},
        "spec": {"features": {f: features.get(f) for f in (CALENDAR, DEDICATED)}},
    }


SLIM = {SERVERS: slim_server, PLANS: slim_plan}
PAGE = 100  # objects a list page (each reduced by SLIM before the next is read)


@dataclass(frozen=True)
class Hosting:
    """The server that has a domain, whether its plan sells calendar and contacts, and
    the server's own mail host when it is served (`mail_host`: spec.mailHost on a plan
    with a dedicated address; None: mail clients are sent to the edge)."""

    namespace: str
    server: str
    plan: str
    calendar: bool
    mail_host: str | None = None


def plans_with(plans: Iterable[dict[str, Any]], feature: str) -> frozenset[str]:
    """The names of the plans whose `feature` (features.<feature>) is on."""
    return frozenset(
        str((p.get("metadata") or {}).get("name", ""))
        for p in plans
        if ((p.get("spec") or {}).get("features") or {}).get(feature) is True
    )


def hosting_of(
    servers: Iterable[dict[str, Any]],
    calendar: frozenset[str],
    dedicated: frozenset[str],
) -> dict[str, Hosting]:
    """Each domain -> the server the edge routes it to (status left out: not read).
    `calendar` and `dedicated`: the names of the plans with calendar and contacts, and
    with a dedicated address."""
    parsed = [
        PersonalMailServer.model_validate(
            {"metadata": obj.get("metadata") or {}, "spec": obj.get("spec") or {}}
        )
        for obj in servers
    ]
    by_key = {routing.key_of(s): s for s in parsed}
    found: dict[str, Hosting] = {}
    for domain, key in routing.route(parsed).owners.items():
        server = by_key[key]
        plan, mail_host = server.plan, server.spec.get("mailHost")
        served = records.served_mail_host(
            mail_host if isinstance(mail_host, str) else None, plan in dedicated
        )
        found[domain] = Hosting(key.namespace, key.name, plan, plan in calendar, served)
    return found


@dataclass(frozen=True)
class Listing:
    domains: frozenset[str]
    keys: openpgp.Keys
    hosting: dict[str, Hosting]


def domains_of(servers: Iterable[dict[str, Any]]) -> frozenset[str]:
    return frozenset(
        str(d).lower().rstrip(".")
        for obj in servers
        for d in (obj.get("spec") or {}).get("domains") or []
    )


def build(servers: list[JSON], plans: list[JSON]) -> Listing:
    """The index of these servers and plans (pure)."""
    return Listing(
        domains_of(servers),
        openpgp.published_keys(servers),
        hosting_of(servers, plans_with(plans, CALENDAR), plans_with(plans, DEDICATED)),
    )


def _key(obj: JSON) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Feed:
    """One informer's handler: its kind's list and events, into the index."""

    def __init__(self, hosted: HostedDomains, kind: str) -> None:
        self.hosted = hosted
        self.kind = kind

    def replace(self, items: list[JSON]) -> None:
        self.hosted._replace(self.kind, items)

    def event(self, kind: str, obj: JSON) -> None:
        self.hosted._event(self.kind, kind, obj)


class HostedDomains:
    """The index, fed by `servers` and `plans` (informers' handlers); `refresh` rebuilds
    it when stale (`run` does so in a thread, `watch_hosted` starts everything)."""

    def __init__(self) -> None:
        self.servers = Feed(self, SERVERS)
        self.plans = Feed(self, PLANS)
        self.ready = threading.Event()  # set once the first index is built
        self.builds = 0  # indexes built
        self._lock = threading.Lock()  # guards the fields below
        self._changed = threading.Condition(self._lock)
        self._building = threading.Lock()  # one rebuild at a time
        self._objects: dict[str, dict[tuple[str, str], JSON]] = {SERVERS: {}, PLANS: {}}
        self._listed: set[str] = set()  # the kinds listed at least once
        self._version = 0  # bumped by every change the index reads
        self._built = -1  # the version the current index was built from
        self._current_listing: Listing | None = None

    # -- the informers' side ------------------------------------------------------------

    def _replace(self, kind: str, items: list[JSON]) -> None:
        fresh = {_key(obj): SLIM[kind](obj) for obj in items}
        with self._lock:
            if kind not in self._listed or fresh != self._objects[kind]:
                self._objects[kind] = fresh
                self._listed.add(kind)
                self._touch()

    def _event(self, kind: str, event: str, obj: JSON) -> None:
        key = _key(obj)
        with self._lock:
            objects = self._objects[kind]
            if event == "DELETED":
                if objects.pop(key, None) is not None:
                    self._touch()
                return
            slim = SLIM[kind](obj)
            if objects.get(key) != slim:
                objects[key] = slim
                self._touch()

    def _touch(self) -> None:
        """(Lock held.) Something the index reads changed."""
        self._version += 1
        self._changed.notify_all()

    def _stale(self) -> bool:
        return self._listed == {SERVERS, PLANS} and self._built != self._version

    # -- rebuilding -----------------------------------------------------------------------

    def refresh(self) -> bool:
        """Rebuild the index if what it reads changed since the last build and both
        kinds were listed; True when it did. Reads keep the last index meanwhile."""
        with self._building:
            with self._lock:
                if not self._stale():
                    return False
                version = self._version
                servers = list(self._objects[SERVERS].values())
                plans = list(self._objects[PLANS].values())
            listing = build(servers, plans)
            with self._lock:
                self._current_listing, self._built = listing, version
                self.builds += 1
            self.ready.set()
            return True

    def run(self, stop: threading.Event, settle: float) -> None:
        """Rebuild `settle` seconds after each change (the changes meanwhile with it),
        until `stop`."""
        while not stop.is_set():
            with self._lock:
                stale = self._changed.wait_for(self._stale, timeout=1.0)
            if stale and not stop.wait(settle):
                try:
                    self.refresh()
                except Exception:  # a bug: keep the last index, try at the next change
                    log.exception("building the hosted domains failed")

    # -- the requests' side ---------------------------------------------------------------

    def domains(self) -> frozenset[str]:
        """The hosted domains."""
        return self._current().domains

    def keys(self) -> openpgp.Keys:
        """(domain, WKD hash) -> the published key."""
        return self._current().keys

    def hosting(self, domain: str) -> Hosting | None:
        """The server that has `domain`."""
        return self._current().hosting.get(domain)

    def _current(self) -> Listing:
        with self._lock:
            if self._current_listing is None:
                raise HostedUnavailableError("the hosted domains are not listed yet")
            return self._current_listing

    def __contains__(self, domain: object) -> bool:
        return domain in self.domains()


def watch_hosted(
    kube: Source,
    stop: threading.Event,
    settle: float = 1.0,
    *,
    backoff: tuple[float, float] = (0.5, 30.0),
) -> HostedDomains:
    """The index, fed by an informer of the servers and one of the plans (each lists in
    pages of `PAGE`, slimming each object as it arrives, resumes its watch where it
    ended, and lists again only when the watch expired or failed), rebuilt by a thread
    of its own; all three stop with `stop`. (The feeds slim again what they get: the
    same objects, and the index stays right when fed whole ones.)"""
    hosted = HostedDomains()
    for kind, feed in ((SERVERS, hosted.servers), (PLANS, hosted.plans)):
        Informer(
            kube,
            collection_path(kind),
            feed,
            stop,
            resync=False,
            backoff=backoff,
            page_size=PAGE,
            transform=SLIM[kind],
        ).start()
    threading.Thread(
        target=hosted.run, args=(stop, settle), name="hosted index", daemon=True
    ).start()
    return hosted
