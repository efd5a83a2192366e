"""The panel's access objects in a customer namespace (builders/access.py) and how the
operator writes them and the login hashes (clients/access.py): once per namespace,
the hashes only when they changed, each server only its own key."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from vpes_operator.builders import access as build
from vpes_operator.clients import access
from vpes_operator.clients.kube import ApiError, Resource
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

ON = OperatorSettings(
    operator_namespace="vpes-system",
    panel_service_account="vpes-panel",
    customer_cluster_role="rel-customer",
    panel_impersonate_cluster_role="rel-panel-impersonate",
)


class RecordingKube:
    """Records every write; `missing` names Secrets a PATCH finds absent (404) once."""

    def __init__(self, missing: set[str] | None = None) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.missing = set(missing or ())

    def resource(self, api_version: str, kind: str) -> Resource:
        return Resource(api_version, kind, kind.lower() + "s", True)

    def apply(self, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.calls.append(("apply", f"{obj['kind']}/{obj['metadata']['name']}", obj))
        return obj

    def create(self, obj: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.calls.append(("create", f"{obj['kind']}/{obj['metadata']['name']}", obj))
        return obj

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        name = path.rsplit("/", 1)[-1]
        if name in self.missing:
            self.missing.discard(name)
            raise ApiError(404, "{}", method, path)
        self.calls.append((method, path, kw.get("body")))
        return {}


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    access.forget()
    yield
    access.forget()


def test_the_customer_account_and_both_bindings() -> None:
    sa, customer, panel = build.access_objects(ON, "vpes-c-1")
    assert sa["kind"] == "ServiceAccount" and sa["metadata"]["name"] == "vpes-customer"
    assert sa["automountServiceAccountToken"] is False
    assert customer["roleRef"]["name"] == "rel-customer"
    assert customer["subjects"] == [
        {"kind": "ServiceAccount", "name": "vpes-customer", "namespace": "vpes-c-1"}
    ]
    assert panel["metadata"]["name"] == "vpes-panel"
    assert panel["roleRef"]["name"] == "rel-panel-impersonate"
    assert panel["subjects"] == [
        {"kind": "ServiceAccount", "name": "vpes-panel", "namespace": "vpes-system"}
    ]
    other = OperatorSettings(panel_service_account="p", panel_namespace="web")
    assert build.access_objects(other, "n")[2]["subjects"][0]["namespace"] == "web"


def test_access_is_written_once_per_namespace_and_never_without_a_panel() -> None:
    kube = RecordingKube()
    access.ensure(kube, ON, "a")  # type: ignore[arg-type]
    access.ensure(kube, ON, "a")  # type: ignore[arg-type]
    written = [(c[0], c[1]) for c in kube.calls]
    assert written == [
        ("apply", "ServiceAccount/vpes-customer"),
        ("apply", "RoleBinding/vpes-customer"),
        ("apply", "RoleBinding/vpes-panel"),
        ("create", "Secret/vpes-panel"),
        ("create", "Secret/vpes-logins"),
    ]
    off = RecordingKube()
    access.ensure(off, OperatorSettings(), "a")  # type: ignore[arg-type]
    access.publish_logins(off, OperatorSettings(), "a", "mail", {"x@y.z": "h"})  # type: ignore[arg-type]
    assert off.calls == []


def test_login_hashes_are_patched_per_server_and_only_when_changed() -> None:
    kube = RecordingKube()
    hashes = {"b@x.example": "{BLF-CRYPT}b", "a@x.example": "{BLF-CRYPT}a"}
    access.publish_logins(kube, ON, "ns", "mail", hashes)  # type: ignore[arg-type]
    access.publish_logins(kube, ON, "ns", "mail", dict(hashes))  # type: ignore[arg-type]
    assert len(kube.calls) == 1
    method, path, body = kube.calls[0]
    assert method == "PATCH" and path.endswith("/vpes-logins")
    assert list(body["data"]) == ["mail.json"]  # only its own key: other servers' stay
    assert json.loads(base64.b64decode(body["data"]["mail.json"])) == hashes
    access.publish_logins(kube, ON, "ns", "mail", {**hashes, "c@x.example": "{BLF-CRYPT}c"})  # type: ignore[arg-type]
    assert len(kube.calls) == 2
    access.withdraw_logins(kube, ON, "ns", "mail")  # type: ignore[arg-type]
    assert kube.calls[-1][2] == {"data": {"mail.json": None}}
    # Withdrawn, the same hashes are written again for a new server of that name.
    access.publish_logins(kube, ON, "ns", "mail", hashes)  # type: ignore[arg-type]
    assert len(kube.calls) == 4


def test_a_deleted_logins_secret_is_made_again() -> None:
    kube = RecordingKube(missing={"vpes-logins"})
    access.publish_logins(kube, ON, "ns", "mail", {"a@x.example": "h"})  # type: ignore[arg-type]
    assert [(c[0], c[1].rsplit("/", 1)[-1]) for c in kube.calls] == [
        ("create", "vpes-logins"),
        ("PATCH", "vpes-logins"),
    ]
