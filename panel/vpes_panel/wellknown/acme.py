"""HTTP-01 answers for the operator's ACME client, at any host:
`GET /.well-known/acme-challenge/<token>` is the key authorization (text/plain) when
the operator put the token into its ConfigMap (`vpes_operator.certs.http01`), else 404.

The ConfigMap is one object, kept by an informer (list, then watch) with the field
selector `metadata.name=<name>`, so that vpes-web's RBAC grants get, list and watch of
that one ConfigMap by name; a request reads the last data seen and never asks the API
server. Before the first list, 503. A token that is not base64url is 404 at once,
without looking and without repeating it.
"""

from __future__ import annotations

import threading

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from vpes_operator.certs.http01 import is_token
from vpes_operator.clients.informer import Informer, Source
from vpes_operator.clients.kube import JSON

ROUTE = "/.well-known/acme-challenge/{token}"


def data_of(items: list[JSON], name: str) -> dict[str, str]:
    """The ConfigMap `name`'s data among `items` (empty when it is not there)."""
    for obj in items:
        if (obj.get("metadata") or {}).get("name") == name:
            return {str(k): str(v) for k, v in (obj.get("data") or {}).items()}
    return {}


class AcmeAnswers:
    """token -> key authorization, fed by an informer of the one ConfigMap."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.synced = threading.Event()  # set at the first list
        self._lock = threading.Lock()
        self._data: dict[str, str] = {}

    def replace(self, items: list[JSON]) -> None:
        fresh = data_of(items, self.name)
        with self._lock:
            self._data = fresh
        self.synced.set()

    def event(self, kind: str, obj: JSON) -> None:
        fresh = {} if kind == "DELETED" else data_of([obj], self.name)
        with self._lock:
            self._data = fresh

    def get(self, token: str) -> str | None:
        """The key authorization for `token` (None: not published)."""
        with self._lock:
            return self._data.get(token)

    async def endpoint(self, request: Request) -> Response:
        token = str(request.path_params.get("token", ""))
        if not is_token(token):
            return PlainTextResponse("not found", 404)
        if not self.synced.is_set():
            return PlainTextResponse("not ready, try again", 503, {"Retry-After": "5"})
        answer = self.get(token)  # from memory: a dict under a lock held for no I/O
        if answer is None:
            return PlainTextResponse("not found", 404)
        return PlainTextResponse(answer)


def configmaps_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps"


def watch_answers(
    kube: Source,
    namespace: str,
    name: str,
    stop: threading.Event,
    *,
    backoff: tuple[float, float] = (0.5, 30.0),
) -> AcmeAnswers:
    """The answers, kept current by an informer of ConfigMap `namespace`/`name` (a watch
    resumed where it ended; a relist after an expiry or failure) until `stop`."""
    answers = AcmeAnswers(name)
    Informer(
        kube,
        configmaps_path(namespace),
        answers,
        stop,
        resync=False,
        backoff=backoff,
        fields=f"metadata.name={name}",
    ).start()
    return answers
