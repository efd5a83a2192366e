"""A small Kubernetes API client: server-side apply, get, delete, status updates.

Built on the `kubernetes` package's configuration and connection pool, but
speaking the REST paths directly so that every kind is applied the same way
(server-side apply with one field manager and forced ownership).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import kubernetes

from ..models.common import View

# An object as JSON, as it enters from the API server or leaves for it.
JSON = dict[str, Any]
V = TypeVar("V", bound=View)


@dataclass(frozen=True)
class Resource:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced:
            if namespace is None:
                raise ValueError(f"{self.kind} is namespaced")
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        return f"{base}/{quote(name)}" if name else base


class ApiError(Exception):
    def __init__(self, status: int, body: str, method: str, path: str) -> None:
        self.status = status
        self.body = body
        try:
            doc = json.loads(body)
            self.reason = str(doc.get("reason", ""))
            self.message = str(doc.get("message", body))
        except (json.JSONDecodeError, AttributeError):
            self.reason, self.message = "", body
        super().__init__(f"{method} {path}: {status} {self.reason}: {self.message}")


class Kube:
    """Thread-safe API access for the operator's (synchronous) handlers."""

    def __init__(self, api: kubernetes.client.ApiClient, field_manager: str) -> None:
        self.api = api
        self.field_manager = field_manager
        self._resources: dict[tuple[str, str], Resource] = {}
        self._discovery = threading.Lock()
        self._headers: dict[str, str] = {}

    def impersonate(self, user: str) -> Kube:
        """The same client acting as `user` (Impersonate-User): the API server then
        authorizes every request as that user. Shares the pool and discovery cache."""
        other = Kube.__new__(Kube)
        other.__dict__.update(self.__dict__)
        other._headers = {**self._headers, "Impersonate-User": user}
        return other

    def resource(self, api_version: str, kind: str) -> Resource:
        """The resource that serves `kind`, from the API server's discovery (cached)."""
        key = (api_version, kind)
        with self._discovery:
            found = self._resources.get(key)
        if found is not None:
            return found
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        # A group that is not served answers 404 here, as a path under it would.
        for r in self.request("GET", path).get("resources") or []:
            if r.get("kind") == kind and "/" not in str(r.get("name")):
                found = Resource(api_version, kind, str(r["name"]), bool(r.get("namespaced")))
                with self._discovery:
                    self._resources[key] = found
                return found
        body = json.dumps({"reason": "NotFound", "message": f"{api_version} has no kind {kind}"})
        raise ApiError(404, body, "GET", path)

    @classmethod
    def connect(cls, field_manager: str, pool_size: int = 32) -> Kube:
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=config)  # type: ignore[no-untyped-call]
        config.connection_pool_maxsize = pool_size
        return cls(kubernetes.client.ApiClient(config), field_manager)

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any,
        query: dict[str, str] | None,
        content_type: str,
        accept: str,
        timeout: float | tuple[float, float],
    ) -> Any:
        """The response (`status`, `read()`, `response`: the urllib3 one) of one call."""
        url_path = path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": accept, "Content-Type": content_type, **self._headers}
        _, url, hdrs, _, _ = self.api.param_serialize(
            method=method,
            resource_path=url_path,
            header_params=headers,
            body=None,
            auth_settings=["BearerToken"],
        )
        # The REST layer serialises dicts for JSON and structured-YAML types.
        return self.api.call_api(
            method, url, header_params=hdrs, body=body, _request_timeout=timeout
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
        accept: str = "application/json",
    ) -> JSON:
        resp = self._send(
            method,
            path,
            body=body,
            query=query,
            content_type=content_type,
            accept=accept,
            timeout=timeout,
        )
        data = resp.read()
        text = data.decode() if isinstance(data, bytes) else str(data or "")
        if not 200 <= resp.status < 300:
            raise ApiError(resp.status, text, method, path)
        result: JSON = json.loads(text) if text else {}
        return result

    def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 300, fields: str = ""
    ) -> Iterator[tuple[str, JSON]]:
        """The events `(type, object)` of the collection at `path` after
        `resource_version`, bookmarks included, until the server ends the watch;
        `fields`: only the objects that field selector selects (`metadata.name=x`: RBAC
        then authorizes the watch by resourceNames).
        An ERROR event (410 Gone: the version is too old, relist) raises ApiError."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
            "allowWatchBookmarks": "true",
            **({"fieldSelector": fields} if fields else {}),
        }
        resp = self._send(
            "GET",
            path,
            body=None,
            query=query,
            content_type="application/json",
            accept="application/json",
            timeout=(10.0, timeout_seconds + 30.0),
        )
        raw = resp.response
        try:
            if not 200 <= resp.status < 300:
                raise ApiError(resp.status, resp.read().decode(errors="replace"), "WATCH", path)
            for line in raw:
                if not line.strip():
                    continue
                event = json.loads(line)
                obj: JSON = event.get("object") or {}
                kind = str(event.get("type", ""))
                if kind == "ERROR":
                    raise ApiError(int(obj.get("code", 500)), json.dumps(obj), "WATCH", path)
                yield kind, obj
        finally:
            raw.close()  # a half-read stream must not go back to the pool
            raw.release_conn()

    # -- objects ---------------------------------------------------------------

    def apply(self, obj: JSON, *, force: bool = True) -> JSON:
        """Server-side apply: the object becomes exactly what we own of it."""
        meta = obj["metadata"]
        res = self.resource(obj["apiVersion"], obj["kind"])
        query = {"fieldManager": self.field_manager, "fieldValidation": "Strict"}
        if force:
            query["force"] = "true"
        return self.request(
            "PATCH",
            res.path(meta.get("namespace"), meta["name"]),
            body=obj,
            query=query,
            content_type="application/apply-patch+yaml",
        )

    def create(self, obj: JSON, *, dry_run: bool = False) -> JSON:
        """Create (POST) with strict field validation, as `kubectl create` does;
        `dry_run`: admission and validation only, nothing is stored."""
        meta = obj["metadata"]
        res = self.resource(obj["apiVersion"], obj["kind"])
        query = {"fieldManager": self.field_manager, "fieldValidation": "Strict"}
        if dry_run:
            query["dryRun"] = "All"
        return self.request("POST", res.path(meta.get("namespace")), body=obj, query=query)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> JSON | None:
        try:
            return self.request("GET", self.resource(api_version, kind).path(namespace, name))
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def read(self, view: type[V], namespace: str | None, name: str) -> V | None:
        """The object, parsed into its typed view (None: not found)."""
        found = self.get(view.API_VERSION, view.KIND, namespace, name)
        return None if found is None else view.model_validate(found)

    def read_list(
        self, view: type[V], namespace: str | None = None, *, labels: str = "", fields: str = ""
    ) -> list[V]:
        """The objects of the view's kind, parsed (all namespaces when `namespace` is None)."""
        found = self.list(view.API_VERSION, view.KIND, namespace, labels=labels, fields=fields)
        return [view.model_validate(obj) for obj in found]

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        labels: str = "",
        fields: str = "",
    ) -> list[JSON]:
        res = self.resource(api_version, kind)
        path = (
            res.path(namespace)
            if namespace or not res.namespaced
            else (("/api/v1" if api_version == "v1" else f"/apis/{api_version}") + f"/{res.plural}")
        )
        query = {
            **({"labelSelector": labels} if labels else {}),
            **({"fieldSelector": fields} if fields else {}),
        }
        items: list[JSON] = self.request("GET", path, query=query or None).get("items", [])
        return items

    def delete(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        resource_version: str | None = None,
    ) -> bool:
        """Delete; `propagation` (Background, Foreground, Orphan) overrides the kind's default;
        with `resource_version`, only that version (409 Conflict otherwise). False: not found."""
        body: JSON = {"propagationPolicy": propagation} if propagation else {}
        if resource_version is not None:
            body["preconditions"] = {"resourceVersion": resource_version}
        try:
            self.request(
                "DELETE", self.resource(api_version, kind).path(namespace, name), body=body or None
            )
            return True
        except ApiError as e:
            if e.status == 404:
                return False
            raise

    def merge_patch(
        self, api_version: str, kind: str, namespace: str | None, name: str, patch: JSON
    ) -> JSON:
        """A JSON merge patch (RFC 7386): only the keys `patch` names change (a null
        removes one), so writers of different keys of one object never undo each other."""
        return self.request(
            "PATCH",
            self.resource(api_version, kind).path(namespace, name),
            body=patch,
            content_type="application/merge-patch+json",
        )

    def patch_metadata(
        self, api_version: str, kind: str, namespace: str | None, name: str, patch: JSON
    ) -> JSON:
        return self.request(
            "PATCH",
            self.resource(api_version, kind).path(namespace, name),
            body={"metadata": patch},
            content_type="application/merge-patch+json",
        )

    def update_status(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        mutate: Callable[[JSON], JSON | None],
        *,
        attempts: int = 8,
    ) -> JSON | None:
        """Read, let `mutate` compute the new status from the object, write it.

        Optimistic concurrency: the write carries the resourceVersion it was
        computed from and is redone on a conflict. `mutate` returns None when
        nothing changes; then nothing is written. Returns the object written,
        or None if nothing was (or the object is gone).
        """
        res = self.resource(api_version, kind)
        path = res.path(namespace, name)
        for attempt in range(attempts):
            obj = self.get(api_version, kind, namespace, name)
            if obj is None:
                return None
            status = mutate(obj)
            if status is None:
                return None
            body: JSON = {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": {"name": name, "resourceVersion": obj["metadata"]["resourceVersion"]},
                "status": status,
            }
            if namespace:
                body["metadata"]["namespace"] = namespace
            try:
                return self.request(
                    "PATCH",
                    path + "/status",
                    body=body,
                    content_type="application/merge-patch+json",
                )
            except ApiError as e:
                if e.status == 404:
                    return None
                if e.status != 409 or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return None
