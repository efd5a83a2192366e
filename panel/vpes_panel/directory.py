"""Which server a login belongs to: mailbox address → (namespace, server).

The only read the panel makes with its own ServiceAccount's power (list
PersonalMailServers in every namespace, spec only used here): before a login
the panel cannot know whose namespace to impersonate. The list is kept for
`ttl` seconds and listed again on a miss after that, so a new mailbox can log
in within seconds and a thousand logins do not list a thousand times.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube


@dataclass(frozen=True)
class Home:
    namespace: str
    server: str


class Directory:
    def __init__(self, kube: Kube, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        # One listing at a time: misses arriving meanwhile wait for it and use it
        # (with 1,000 servers a listing holds ~15 MB; eight at once outgrew the pod).
        self._listing = threading.Lock()
        self._homes: dict[str, Home] = {}
        self._domains: dict[str, Home] = {}
        self._listed_at: float | None = None

    def _refresh(self, since: float | None = None) -> None:
        """List every server, unless a listing finished after `since` meanwhile."""
        with self._listing:
            with self._lock:
                done = self._listed_at
            if since is not None and done is not None and done > since:
                return
            self._list()

    def _list(self) -> None:
        homes: dict[str, Home] = {}
        domains: dict[str, Home] = {}
        for obj in self.kube.list(API_VERSION, "PersonalMailServer"):
            meta, spec = obj["metadata"], obj.get("spec") or {}
            home = Home(str(meta["namespace"]), str(meta["name"]))
            for mailbox in spec.get("mailboxes") or []:
                homes.setdefault(str(mailbox.get("address", "")), home)
            for domain in spec.get("domains") or []:
                domains.setdefault(str(domain), home)
        with self._lock:
            self._homes = homes
            self._domains = domains
            self._listed_at = self.clock()

    def find(self, address: str) -> Home | None:
        with self._lock:
            found = self._homes.get(address)
            fresh = self._listed_at is not None and self.clock() - self._listed_at < self.ttl
        if found is not None or fresh:
            return found
        self._refresh(since=self.clock())
        with self._lock:
            return self._homes.get(address)

    def domain_home(self, domain: str) -> Home | None:
        """The server that has `domain`, listed now (a domain is added rarely, and a
        stale answer would let two customers claim one domain)."""
        self._refresh()
        with self._lock:
            return self._domains.get(domain)
