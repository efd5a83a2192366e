"""List-then-watch of one collection, forever, with a callback per event."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from vpes_operator.clients.kube import JSON, ApiError, Kube

log = logging.getLogger(__name__)


class Handler(Protocol):
    def replace(self, items: list[JSON]) -> None:
        """The full current list (first list and every relist)."""

    def event(self, kind: str, obj: JSON) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""


class Informer(threading.Thread):
    """Hands ``handler`` the full list of ``path``, then each watch event; relists when
    the watch ends or expires. ``synced`` is set once the first list was handled."""

    def __init__(self, kube: Kube, path: str, handler: Handler, stop: threading.Event) -> None:
        super().__init__(name=f"informer {path}", daemon=True)
        self.kube = kube
        self.path = path
        self.handler = handler
        self.stop = stop
        self.synced = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self._list_and_watch()
            except ApiError as exc:
                if exc.status != 410:
                    log.warning("%s: %s", self.path, exc)
                    self.stop.wait(1.0)
            except Exception:
                log.exception("%s: watch failed; relisting", self.path)
                self.stop.wait(1.0)

    def _list_and_watch(self) -> None:
        listing = self.kube.request("GET", self.path)
        try:
            self.handler.replace(list(listing.get("items") or []))
        except Exception:
            log.exception("%s: handler failed on the list", self.path)
        self.synced.set()
        version = str(listing["metadata"]["resourceVersion"])
        for kind, obj in self.kube.watch(self.path, version):
            if self.stop.is_set():
                return
            if kind != "BOOKMARK":
                self._dispatch(kind, obj)

    def _dispatch(self, kind: str, obj: JSON) -> None:
        try:
            self.handler.event(kind, obj)
        except Exception:
            log.exception("%s: handler failed on %s", self.path, kind)
