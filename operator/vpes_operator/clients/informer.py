"""List-then-watch of one collection, forever, with a callback per event (an informer).

The handler gets the full list first (and again at every relist), then each watch
event. When the watch ends (the server's timeout), the informer either lists again
(`resync`: a periodic full resync, for a handler that retries what failed on the next
list) or resumes the watch from the last version it saw (events and bookmarks), which
costs nothing while the collection is quiet. A 410 Gone (the version is too old for
the API server to replay from) relists at once; any other failure (the API server
away, a refused request, a broken stream) relists after a back-off that doubles from
`backoff[0]` to `backoff[1]` seconds and starts again after a list that succeeded.

With `page_size`, a list is made of pages of that many objects (limit and continue: the
API server serves them from one snapshot), and `transform` reduces each object as it
arrives (list pages and watch events) to what the handler keeps: a large collection is
then never whole in memory at once. With `fields`, lists and watches carry that field
selector (`metadata.name=<name>`: one object, which RBAC may then grant by name).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from .kube import JSON, ApiError

log = logging.getLogger(__name__)


class Handler(Protocol):
    def replace(self, items: list[JSON]) -> None:
        """The full current list (first list and every relist)."""

    def event(self, kind: str, obj: JSON) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""


class Source(Protocol):
    """What an informer asks of the API client (`Kube` is one)."""

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None) -> JSON: ...

    def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 300, fields: str = ""
    ) -> Iterator[tuple[str, JSON]]: ...


def next_delay(delay: float, backoff: tuple[float, float]) -> float:
    """The wait after one more failure in a row, `delay` being the last one (0: none)."""
    first, most = backoff
    return min(most, max(first, delay * 2))


class Informer(threading.Thread):
    """Hands ``handler`` the full list of ``path``, then each watch event. ``synced`` is
    set once the first list was handled."""

    def __init__(
        self,
        kube: Source,
        path: str,
        handler: Handler,
        stop: threading.Event,
        *,
        resync: bool = True,
        watch_seconds: int = 300,
        backoff: tuple[float, float] = (0.5, 30.0),
        page_size: int = 0,
        transform: Callable[[JSON], JSON] | None = None,
        fields: str = "",
    ) -> None:
        super().__init__(name=f"informer {path}", daemon=True)
        self.kube = kube
        self.path = path
        self.handler = handler
        self.stop = stop
        self.resync = resync
        self.watch_seconds = watch_seconds
        self.backoff = backoff
        self.page_size = page_size
        self.transform = transform
        self.fields = fields
        self.synced = threading.Event()
        self.lists = 0  # lists made (the first and every relist)

    def run(self) -> None:
        delay = 0.0
        while not self.stop.is_set():
            try:
                version = self._list()
                delay = 0.0
                self._watch(version)
            except ApiError as exc:
                if exc.status == 410:
                    log.info("%s: watch expired (410 Gone); relisting", self.path)
                    continue
                log.warning("%s: %s", self.path, exc)
                delay = next_delay(delay, self.backoff)
            except Exception:
                log.exception("%s: list or watch failed; relisting", self.path)
                delay = next_delay(delay, self.backoff)
            if delay:
                self.stop.wait(delay)

    def _shape(self, obj: JSON) -> JSON:
        return obj if self.transform is None else self.transform(obj)

    def _list(self) -> str:
        """List (page by page), hand the handler the items; the list's version."""
        items: list[JSON] = []
        limit = {"limit": str(self.page_size)} if self.page_size else {}
        selected = {"fieldSelector": self.fields} if self.fields else {}
        query = {**selected, **limit}
        while True:
            listing = self.kube.request("GET", self.path, query=query or None)
            items.extend(self._shape(obj) for obj in listing.get("items") or [])
            token = (listing.get("metadata") or {}).get("continue")
            if not (limit and token):
                break
            query = {**selected, **limit, "continue": str(token)}
        self.lists += 1
        try:
            self.handler.replace(items)
        except Exception:
            log.exception("%s: handler failed on the list", self.path)
        self.synced.set()
        return str(listing["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> None:
        """Watch from `version` until the watch ends and `resync` is set, or stop."""
        while not self.stop.is_set():
            events = self.kube.watch(
                self.path, version, timeout_seconds=self.watch_seconds, fields=self.fields
            )
            for kind, obj in events:
                if self.stop.is_set():
                    return
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    self._dispatch(kind, self._shape(obj))
            if self.resync:
                return

    def _dispatch(self, kind: str, obj: JSON) -> None:
        try:
            self.handler.event(kind, obj)
        except Exception:
            log.exception("%s: handler failed on %s", self.path, kind)
