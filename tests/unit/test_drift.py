"""Which servers drifted: children missing, or written by another field manager."""

from __future__ import annotations

from typing import Any

import pytest
from vpes_operator import drift, naming
from vpes_operator.dns import ownership
from vpes_operator.models.common import ObjectMeta

pytestmark = pytest.mark.unit
OURS = "vpes-operator"


def server(name: str = "s", uid: str = "u1", **meta: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "ns", "uid": uid, "finalizers": [naming.FINALIZER], **meta}


def child(kind: str, name: str, owner: str = "u1", *managers: tuple[str, str]) -> ObjectMeta:
    fields = [{"manager": OURS, "operation": "Apply", "time": "2026-12-01T00:00:00Z"}]
    fields += [
        {"manager": m, "operation": "Update", "time": "2026-12-02T00:00:00Z", "subresource": sub}
        for m, sub in managers
    ]
    return ObjectMeta.model_validate(
        {
            "name": name,
            "namespace": "ns",
            "uid": f"{kind}-{name}",
            "resourceVersion": "7",
            "ownerReferences": [{"kind": "PersonalMailServer", "uid": owner}],
            "managedFields": fields,
        }
    )


def complete(name: str = "s", owner: str = "u1") -> dict[str, list[ObjectMeta]]:
    return {c.kind: [child(c.kind, c.name(name), owner)] for c in drift.CHILDREN}


def find(servers: list[dict[str, Any]], children: Any, already: Any = None) -> list[drift.Drift]:
    metas = [ObjectMeta.model_validate(s) for s in servers]
    return drift.find([drift.server_of(m) for m in metas], children, OURS, already)


def test_a_complete_server_has_no_drift() -> None:
    assert find([server()], complete()) == []


@pytest.mark.parametrize("kind", [c.kind for c in drift.CHILDREN])
def test_a_missing_child_is_drift(kind: str) -> None:
    children = complete()
    children[kind] = []
    (d,) = find([server()], children)
    assert (d.namespace, d.name) == ("ns", "s") and f"{kind} " in d.reason
    assert "missing" in d.reason


def test_an_edit_by_hand_is_drift_but_status_writes_are_not() -> None:
    children = complete()
    children["Service"] = [child("Service", "s", "u1", ("kubectl-edit", ""))]
    children["StatefulSet"] = [
        child("StatefulSet", "s", "u1", ("kube-controller-manager", "status"))
    ]
    (d,) = find([server()], children)
    assert d.reason == "Service s was changed by kubectl-edit"


def test_an_edit_already_reported_is_not_reported_again() -> None:
    children = complete()
    children["NetworkPolicy"] = [child("NetworkPolicy", "s-isolation", "u1", ("kubectl", ""))]
    edited = drift.edited_children(children, OURS)
    assert edited == {("NetworkPolicy-s-isolation", "7"): "kubectl"}
    assert find([server()], children, edited) == []


def test_children_of_another_server_do_not_count() -> None:
    """Same names in another namespace's server: matched by the owner's uid."""
    assert len(find([server()], complete(owner="someone-else"))) == 1


def test_servers_being_deleted_or_never_handled_are_left_alone() -> None:
    gone = server(deletionTimestamp="2026-12-02T00:00:00Z")
    new = {**server(name="n", uid="u2"), "finalizers": []}
    assert find([gone, new], {}) == []


def dns_cm(owner: str, **meta: Any) -> ObjectMeta:
    return ObjectMeta.model_validate(
        {
            "name": "s-dns",
            "namespace": "ns",
            "labels": {naming.LABEL_COMPONENT: "dns"},
            "finalizers": [ownership.CM_FINALIZER],
            "ownerReferences": [{"kind": "PersonalMailServer", "uid": owner, "name": "s"}],
            **meta,
        }
    )


def test_a_dns_config_map_whose_server_went_without_cleanup_is_an_orphan() -> None:
    gone = dns_cm("u-gone", deletionTimestamp="2026-12-02T00:00:00Z")
    assert drift.orphaned_dns([gone], ["u1"]) == [gone]


@pytest.mark.parametrize(
    "cm",
    [
        dns_cm("u1", deletionTimestamp="2026-12-02T00:00:00Z"),  # its server still cleans up
        dns_cm("u-gone"),  # not being deleted: a server created since the list, say
        dns_cm("u-gone", deletionTimestamp="x", finalizers=[]),  # already released
    ],
)
def test_other_dns_config_maps_are_left_alone(cm: ObjectMeta) -> None:
    assert drift.orphaned_dns([cm], ["u1"]) == []
