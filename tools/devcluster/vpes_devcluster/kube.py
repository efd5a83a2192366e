"""A small JSON-in, JSON-out view of the Kubernetes API over ``kubernetes.client.ApiClient``.

The cluster tooling works on plain dicts (the wire format) rather than the generated
models: it reads a few fields of many objects, and dicts keep that fast and simple.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from kubernetes import client, config

Obj = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        try:
            message = str(json.loads(body).get("message", body))
        except (ValueError, AttributeError):
            message = body
        super().__init__(f"{method} {path}: {status} {message}")


def api_client(kubeconfig: Path, pool_size: int = 16) -> client.ApiClient:
    """An ApiClient for ``kubeconfig`` with room for ``pool_size`` parallel requests."""
    conf = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=conf, persist_config=False
    )
    conf.connection_pool_maxsize = pool_size
    return client.ApiClient(conf)


class Rest:
    """Plain REST calls against one API server."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = 30.0,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self.api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        method_, url, headers_, body_, post = serialized
        return self.api.call_api(
            method_,
            url,
            header_params=headers_,
            body=body_,
            post_params=post,
            _request_timeout=timeout,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        resp = self._call(method, path, body, query, content_type)
        data = cast(bytes, resp.read())
        text = data.decode("utf-8", "replace") if data else ""
        if not 200 <= int(resp.status) < 300:
            raise ApiError(method, path, int(resp.status), text)
        return cast(Obj, json.loads(text)) if text else {}

    def get(self, path: str, **query: str) -> Obj:
        return self.request("GET", path, query=query)

    def create(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Obj) -> Obj:
        return self.request("PATCH", path, body, content_type=MERGE_PATCH)

    def delete(self, path: str) -> Obj:
        return self.request("DELETE", path)

    def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 300
    ) -> Iterator[tuple[str, Obj]]:
        """Events ``(type, object)`` of ``path`` after ``resource_version``, until the
        server ends the watch. An ERROR event (e.g. 410 Gone) raises :class:`ApiError`."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
            "allowWatchBookmarks": "true",
        }
        resp = self._call("GET", path, query=query, timeout=(10.0, timeout_seconds + 30.0))
        raw = resp.response
        try:
            if not 200 <= int(resp.status) < 300:
                data = cast(bytes, resp.read())
                raise ApiError("WATCH", path, int(resp.status), data.decode("utf-8", "replace"))
            for line in raw:
                if not line.strip():
                    continue
                event = cast(Obj, json.loads(line))
                kind = str(event.get("type", ""))
                obj = cast(Obj, event.get("object") or {})
                if kind == "ERROR":
                    code = int(obj.get("code", 500))
                    raise ApiError("WATCH", path, code, json.dumps(obj))
                yield kind, obj
        finally:
            raw.close()  # never hand a half-read stream back to the pool
            raw.release_conn()
