"""Customer.change: only a change of the spec is a conflict; a write that lost to the
operator's status report is made again on the fresh object."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from vpes_operator.clients.kube import ApiError, Resource
from vpes_panel.customer import ConflictError, Customer

pytestmark = pytest.mark.unit


class Server:
    """One server; `race` status (or spec) changes happen between a GET and a PUT."""

    def __init__(self, races: list[str]) -> None:
        self.obj: dict[str, Any] = {
            "metadata": {"name": "mail", "generation": 3, "resourceVersion": "10"},
            "spec": {"domains": ["a.example"]},
            "status": {"phase": "Ready"},
        }
        self.races = races
        self.puts = 0

    def impersonate(self, user: str) -> Server:
        return self

    def resource(self, api_version: str, kind: str) -> Resource:
        return Resource(api_version, kind, "personalmailservers")

    def get(self, *_: Any) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        assert method == "PUT"
        self.puts += 1
        if self.races:
            what = self.races.pop(0)
            meta = self.obj["metadata"]
            meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
            if what == "spec":
                meta["generation"] += 1
        body = kw["body"]
        if body["metadata"]["resourceVersion"] != self.obj["metadata"]["resourceVersion"]:
            raise ApiError(409, "{}", method, path)
        assert "status" not in body
        self.obj["spec"] = body["spec"]
        self.obj["metadata"]["generation"] += 1
        return self.obj


def add(spec: dict[str, Any]) -> None:
    spec["domains"].append("b.example")


def test_a_write_that_lost_to_a_status_report_is_made_again() -> None:
    kube = Server(races=["status", "status"])
    customer = Customer(kube, "ns", "mail", "vpes-customer")  # type: ignore[arg-type]
    customer.change(3, add)
    assert kube.obj["spec"]["domains"] == ["a.example", "b.example"]
    assert kube.puts == 3


def test_a_spec_changed_meanwhile_is_the_users_conflict() -> None:
    kube = Server(races=["spec"])
    customer = Customer(kube, "ns", "mail", "vpes-customer")  # type: ignore[arg-type]
    with pytest.raises(ConflictError):
        customer.change(3, add)
    assert kube.obj["spec"]["domains"] == ["a.example"]
    with pytest.raises(ConflictError):  # a stale form: nothing is even tried
        customer.change(2, add)
    assert kube.puts == 1


def test_a_server_always_racing_ends_in_a_conflict_not_a_loop() -> None:
    kube = Server(races=["status"] * 10)
    customer = Customer(kube, "ns", "mail", "vpes-customer")  # type: ignore[arg-type]
    with pytest.raises(ConflictError):
        customer.change(3, add)
    assert kube.puts == 4
