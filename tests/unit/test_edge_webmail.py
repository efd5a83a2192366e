"""The maps' webmail-domains: the domains routed to a server whose plan has
features.webmail, following the login proxy's routing; not part of the edge's
version."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from vpes_operator.builders.meta import Owner
from vpes_operator.edge import build, webmail
from vpes_operator.models.server import PersonalMailServer
from vpes_operator.reconcile import endpoints
from vpes_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
SETTINGS = OperatorSettings()
PLANS: dict[str, dict[str, Any]] = {
    "mail": {"features": {"webmail": False}},
    "personal": {},  # the model's default: webmail
    "family": {"features": {"webmail": True}},
    "broken": {"maxDomains": "many"},
}


def server(
    namespace: str,
    domains: list[str],
    *,
    plan: str = "personal",
    created: dt.datetime = T0,
    deleting: bool = False,
    suspended: bool = False,
) -> PersonalMailServer:
    meta: dict[str, Any] = {
        "name": "mail",
        "namespace": namespace,
        "uid": f"uid-{namespace}",
        "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if deleting:
        meta["deletionTimestamp"] = (created + dt.timedelta(hours=1)).isoformat()
    spec = {"plan": plan, "owner": {"email": "o@owner.example"}, "domains": domains}
    if suspended:
        spec["suspended"] = True
    return PersonalMailServer.model_validate({"metadata": meta, "spec": spec})


def listed(servers: list[PersonalMailServer], plans: dict[str, Any] = PLANS) -> str:
    return build(servers, plans, SETTINGS).maps.files["webmail-domains"]


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ("personal", "a.example\nb.example\n"),
        ("family", "a.example\nb.example\n"),
        ("mail", ""),
        ("broken", ""),  # a plan that does not validate sells nothing
        ("missing", ""),  # nor one that does not exist
    ],
)
def test_a_plan_with_webmail_lists_its_domains_sorted(plan: str, expected: str) -> None:
    assert listed([server("t-a", ["b.example", "a.example"], plan=plan)]) == expected


def test_only_servers_with_webmail_and_one_line_a_domain() -> None:
    fleet = [
        server("t-a", ["a.example"], plan="family"),
        server("t-b", ["b.example", "b.test"], plan="mail"),
        server("t-c", ["c.example"]),
    ]
    assert listed(fleet) == "a.example\nc.example\n"


@pytest.mark.parametrize(
    ("first_plan", "second_plan", "expected"),
    [
        ("mail", "family", "own.example\n"),  # routed to the first: no webmail there
        ("family", "mail", "shared.example\n"),  # routed to the first, which has it
    ],
)
def test_a_domain_two_servers_claim_follows_the_routed_one(
    first_plan: str, second_plan: str, expected: str
) -> None:
    first = server("t-first", ["shared.example"], plan=first_plan)
    second = server(
        "t-second",
        ["own.example", "shared.example"],
        plan=second_plan,
        created=T0 + dt.timedelta(days=1),
    )
    assert listed([second, first]) == expected


def test_suspended_servers_stay_listed_as_the_proxy_routes_them() -> None:
    edge = build([server("t-s", ["s.example"], suspended=True)], PLANS, SETTINGS)
    assert edge.maps.files["webmail-domains"] == "s.example\n"
    assert "s.example:::::::proxy=y" in edge.maps.files["proxy"]


def test_a_server_being_deleted_lists_nothing() -> None:
    assert listed([server("t-d", ["d.example"], deleting=True)]) == ""


def test_the_edge_version_ignores_the_webmail_domains() -> None:
    fleet = [server("t-a", ["a.example"])]
    on = build(fleet, PLANS, SETTINGS).maps
    off = build(fleet, {"personal": {"features": {"webmail": False}}}, SETTINGS).maps
    assert on.files["webmail-domains"] != off.files["webmail-domains"]
    assert on.version == off.version


@pytest.mark.parametrize(
    ("plan", "expected"),
    [(None, False), ({}, True), ({"features": {"webmail": False}}, False), ({"storage": 5}, False)],
)
def test_allowed(plan: dict[str, Any] | None, expected: bool) -> None:
    assert webmail.allowed(plan) is expected


@pytest.mark.parametrize(
    ("url", "plan_has_it", "expected"),
    [
        ("https://webmail.example.net", True, "https://webmail.example.net"),
        ("https://webmail.example.net", False, None),  # the plan does not sell it
        ("", True, None),  # the platform runs no webmail (chart: webmail.enabled false)
    ],
)
def test_status_endpoints_name_the_webmail_only_where_it_serves(
    url: str, plan_has_it: bool, expected: str | None
) -> None:
    owner = Owner(name="mail", namespace="t-a", uid="u", plan="personal")
    got = endpoints(owner, OperatorSettings(webmail_url=url), plan_has_it)
    assert got.webmail_url == expected
