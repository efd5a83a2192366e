"""Which domains vpes hosts (every domain in some PersonalMailServer's spec.domains),
the OpenPGP keys their mailboxes publish (WKD), and which server has each domain
(for the calendar proxy, dav.py), from one listing of the servers and the MailPlans.

The only reads the web service makes (its ServiceAccount may get, list and watch
servers and plans, nothing else). A domain listed by several servers belongs to the
one the edge routes it to (`vpes_operator.edge.routing`: the oldest).

The lists are made at most once every `ttl` seconds, whatever the requests ask (a
stream of made-up Host names cannot make it list more), and one listing at a time:
requests arriving while one runs wait for it and use it. A failed listing keeps the
last good domains (and plans; it is retried after `ttl`); before any listing of the
servers succeeded, `HostedUnavailableError`, and the next request tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_operator.edge import routing
from vpes_operator.models.server import PersonalMailServer

from .. import openpgp

log = logging.getLogger("vpes.web")

ListServers = Callable[[], Iterable[dict[str, Any]]]
ListPlans = Callable[[], Iterable[dict[str, Any]]]


class HostedUnavailableError(Exception):
    """No listing of the servers has succeeded yet."""


def servers_of(kube: Kube) -> ListServers:
    """Every PersonalMailServer, in every namespace."""
    return lambda: kube.list(API_VERSION, "PersonalMailServer")


def plans_of(kube: Kube) -> ListPlans:
    """Every MailPlan (cluster-scoped)."""
    return lambda: kube.list(API_VERSION, "MailPlan")


def no_plans() -> list[dict[str, Any]]:
    return []


@dataclass(frozen=True)
class Hosting:
    """The server that has a domain, and whether its plan sells calendar and contacts."""

    namespace: str
    server: str
    plan: str
    calendar: bool


def calendar_plans(plans: Iterable[dict[str, Any]]) -> frozenset[str]:
    """The names of the plans with features.calendar."""
    return frozenset(
        str((p.get("metadata") or {}).get("name", ""))
        for p in plans
        if ((p.get("spec") or {}).get("features") or {}).get("calendar") is True
    )


def hosting_of(servers: Iterable[dict[str, Any]], calendar: frozenset[str]) -> dict[str, Hosting]:
    """Each domain -> the server the edge routes it to (status left out: not read)."""
    parsed = [
        PersonalMailServer.model_validate(
            {"metadata": obj.get("metadata") or {}, "spec": obj.get("spec") or {}}
        )
        for obj in servers
    ]
    by_key = {routing.key_of(s): s for s in parsed}
    found: dict[str, Hosting] = {}
    for domain, key in routing.route(parsed).owners.items():
        plan = by_key[key].plan
        found[domain] = Hosting(key.namespace, key.name, plan, plan in calendar)
    return found


@dataclass(frozen=True)
class Listing:
    domains: frozenset[str]
    keys: openpgp.Keys
    hosting: dict[str, Hosting] = field(default_factory=dict)
    calendar: frozenset[str] = frozenset()  # the plans with calendar


def domains_of(servers: Iterable[dict[str, Any]]) -> frozenset[str]:
    return frozenset(
        str(d).lower().rstrip(".")
        for obj in servers
        for d in (obj.get("spec") or {}).get("domains") or []
    )


class HostedDomains:
    def __init__(
        self,
        list_servers: ListServers,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        list_plans: ListPlans = no_plans,
    ) -> None:
        self.list_servers = list_servers
        self.list_plans = list_plans
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()  # guards the fields below
        self._listing = threading.Lock()  # one listing at a time
        self._current_listing: Listing | None = None
        self._checked_at: float | None = None
        self._listings = 0  # listings attempted: a waiter sees whether one ran meanwhile

    def _fresh(self) -> bool:
        return self._checked_at is not None and self.clock() - self._checked_at < self.ttl

    def domains(self) -> frozenset[str]:
        """The hosted domains (blocking: may list the servers)."""
        return self._current().domains

    def keys(self) -> openpgp.Keys:
        """(domain, WKD hash) -> the published key (blocking: may list the servers)."""
        return self._current().keys

    def hosting(self, domain: str) -> Hosting | None:
        """The server that has `domain` (blocking: may list the servers and plans)."""
        return self._current().hosting.get(domain)

    def _current(self) -> Listing:
        with self._lock:
            if self._fresh() and self._current_listing is not None:
                return self._current_listing
            seen = self._listings
        with self._listing:
            with self._lock:
                if self._listings == seen:
                    self._listings += 1
                    run = True
                else:
                    run = False  # another request listed while this one waited
            if run:
                self._list()
        with self._lock:
            if self._current_listing is None:
                raise HostedUnavailableError("the hosted domains could not be listed yet")
            return self._current_listing

    def _list(self) -> None:
        try:
            servers = list(self.list_servers())
        except Exception as e:  # the API server away, RBAC: keep what was known
            log.warning("listing the servers failed (%s); keeping the last hosted domains", e)
            servers = None
        try:
            calendar: frozenset[str] | None = calendar_plans(self.list_plans())
        except Exception as e:
            log.warning("listing the plans failed (%s); keeping the last plans", e)
            calendar = None
        with self._lock:
            last = self._current_listing
            if calendar is None:
                calendar = last.calendar if last is not None else frozenset()
            if servers is not None:
                self._current_listing = Listing(
                    domains_of(servers),
                    openpgp.published_keys(servers),
                    hosting_of(servers, calendar),
                    calendar,
                )
            self._checked_at = self.clock()

    def __contains__(self, domain: object) -> bool:
        return domain in self.domains()
