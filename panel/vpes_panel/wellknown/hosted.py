"""Which domains vpes hosts (every domain in some PersonalMailServer's spec.domains),
and the OpenPGP keys their mailboxes publish (WKD), from one listing.

The only read the web service makes (its ServiceAccount may get, list and watch
servers, nothing else). The list is made at most once every `ttl` seconds,
whatever the requests ask (a stream of made-up Host names cannot make it list
more), and one listing at a time: requests arriving while one runs wait for it
and use it. A failed listing keeps the last good domains (and is retried after
`ttl`); before any listing succeeded, `HostedUnavailableError`, and the next
request tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from .. import openpgp

log = logging.getLogger("vpes.web")

ListServers = Callable[[], Iterable[dict[str, Any]]]


class HostedUnavailableError(Exception):
    """No listing of the servers has succeeded yet."""


def servers_of(kube: Kube) -> ListServers:
    """Every PersonalMailServer, in every namespace."""
    return lambda: kube.list(API_VERSION, "PersonalMailServer")


def domains_of(servers: Iterable[dict[str, Any]]) -> frozenset[str]:
    return frozenset(
        str(d).lower().rstrip(".")
        for obj in servers
        for d in (obj.get("spec") or {}).get("domains") or []
    )


class HostedDomains:
    def __init__(
        self, list_servers: ListServers, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.list_servers = list_servers
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()  # guards the fields below
        self._listing = threading.Lock()  # one listing at a time
        self._domains: frozenset[str] | None = None
        self._keys: openpgp.Keys = {}
        self._checked_at: float | None = None
        self._listings = 0  # listings attempted: a waiter sees whether one ran meanwhile

    def _fresh(self) -> bool:
        return self._checked_at is not None and self.clock() - self._checked_at < self.ttl

    def domains(self) -> frozenset[str]:
        """The hosted domains (blocking: may list the servers)."""
        return self._current()[0]

    def keys(self) -> openpgp.Keys:
        """(domain, WKD hash) -> the published key (blocking: may list the servers)."""
        return self._current()[1]

    def _current(self) -> tuple[frozenset[str], openpgp.Keys]:
        with self._lock:
            if self._fresh() and self._domains is not None:
                return self._domains, self._keys
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
            if self._domains is None:
                raise HostedUnavailableError("the hosted domains could not be listed yet")
            return self._domains, self._keys

    def _list(self) -> None:
        try:
            servers = list(self.list_servers())
        except Exception as e:  # the API server away, RBAC: keep what was known
            log.warning("listing the servers failed (%s); keeping the last hosted domains", e)
            servers = None
        with self._lock:
            if servers is not None:
                self._domains = domains_of(servers)
                self._keys = openpgp.published_keys(servers)
            self._checked_at = self.clock()

    def __contains__(self, domain: object) -> bool:
        return domain in self.domains()
