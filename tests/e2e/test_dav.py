"""Calendars and contacts end to end: each calendar customer's own Radicale in
its server's pod on the real node (images/dav, its collections on the server's
volume), reached through vpes-web's calendar proxy (run in this process, as the
panel flow runs the panel) by a real CalDAV client and plain CardDAV requests.

Two customers with calendars and one whose plan has none, each in its own
namespace: an event and a contact round-trip; what one customer stores the other
cannot see (the proxy routes each login to its own domain's server, and that
Radicale holds nobody else's data); a wrong password and a plan without
calendars get a clear refusal. The NetworkPolicy side (only vpes-web's pods
reach the dav port) is in test_isolation.py; backup and restore of a calendar in
test_backup_restore.py.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from caldav.davclient import DAVClient
from kubernetes import client
from vpes_devcluster import Cluster
from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import Kube
from vpes_operator.settings import OperatorSettings
from vpes_panel.wellknown.app import build_app
from vpes_panel.wellknown.hosted import Hosting, watch_hosted
from vpes_panel.wellknown.settings import WebSettings

from tests.dav_samples import ADDRESSBOOK_MKCOL, contact, event
from tests.e2e import support
from tests.integration.operator_support import OperatorProcess, wait_ready
from tests.unit.dav_support import served

DAV_PORT = 5232
EDGE = "127.0.0.1"  # vpes-web answers at its edge web name: on loopback, its address


@dataclass(frozen=True)
class Customer:
    ns: str
    name: str
    address: str


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from support.start_operator(
        cluster,
        images["tenant"],
        tmp_path_factory.mktemp("operator-dav"),
        VPES_DAV_IMAGE=images["dav"],
    )


@pytest.fixture(scope="module")
def customers(
    api: Kube, core: client.CoreV1Api, operator: OperatorProcess
) -> Iterator[dict[str, Customer]]:
    calendar = support.small_plan(api, features={"calendar": True})
    plain = support.small_plan(api, features={"calendar": False})
    made: dict[str, Customer] = {}
    try:
        for who, plan in (("ann", calendar), ("bob", calendar), ("cat", plain)):
            ns = support.make_namespace(core, f"dav-{who}-{uuid.uuid4().hex[:6]}")
            address = support.create_server(api, ns, who, plan, f"{who}.example")
            made[who] = Customer(ns, who, address)
        for c in made.values():
            wait_ready(api, c.ns, c.name, timeout=240)
        yield made
    finally:
        for c in made.values():
            core.delete_namespace(c.ns)
        for plan in (calendar, plain):
            api.delete(API_VERSION, "MailPlan", None, plan)


@pytest.fixture(scope="module")
def web(api: Kube, customers: dict[str, Customer]) -> Iterator[str]:
    """vpes-web under uvicorn on loopback; each server's Radicale at its Service's
    ClusterIP (this process is not in the cluster's DNS)."""

    def backend(h: Hosting) -> str:
        svc = api.get("v1", "Service", h.namespace, naming.service(h.server))
        assert svc is not None
        return f"http://{svc['spec']['clusterIP']}:{DAV_PORT}"

    for c in customers.values():
        if c.name != "cat":
            support.service_ip(api, c.ns, c.name, port=DAV_PORT)
    settings = WebSettings(mail=OperatorSettings(edge_web_host=EDGE), hosted_settle_seconds=1.0)
    stop = threading.Event()
    hosted = watch_hosted(api, stop, 1.0)
    assert hosted.ready.wait(30), "vpes-web's index never synced"
    try:
        with served(build_app(settings, hosted, dav_backend=backend)) as port:
            yield f"http://{EDGE}:{port}/dav/"
    finally:
        stop.set()


def caldav(web: str, c: Customer) -> DAVClient:
    return DAVClient(url=web, username=c.address, password=support.PASSWORD)


def test_an_event_and_a_contact_round_trip_through_vpes_web(
    web: str, customers: dict[str, Customer]
) -> None:
    ann = customers["ann"]
    calendar = caldav(web, ann).principal().make_calendar(name="Family")
    calendar.save_event(event(uuid.uuid4(), "Dinner"))
    events = calendar.events()
    assert [e.icalendar_component["summary"] for e in events] == ["Dinner"]
    events[0].delete()
    assert calendar.events() == []

    book = f"{web}{ann.address}/contacts/"
    with httpx.Client(auth=(ann.address, support.PASSWORD), timeout=30) as http:
        assert http.request("MKCOL", book, content=ADDRESSBOOK_MKCOL).status_code == 201
        uid = uuid.uuid4()
        assert http.put(f"{book}{uid}.vcf", content=contact(uid)).status_code == 201
        got = http.get(f"{book}{uid}.vcf")
        assert got.status_code == 200 and "FN:Dana Example" in got.text


def test_one_customer_cannot_see_anothers_calendars(
    web: str, customers: dict[str, Customer]
) -> None:
    ann, bob = customers["ann"], customers["bob"]
    private = caldav(web, ann).principal().make_calendar(name="Private")
    private.save_event(event(uuid.uuid4(), "Secret meeting"))
    with httpx.Client(auth=(bob.address, support.PASSWORD), timeout=30) as http:
        theirs = http.request("PROPFIND", f"{web}{ann.address}/", headers={"Depth": "1"})
        assert theirs.status_code in (403, 404)
        assert "Private" not in theirs.text
        # Bob's own home (his server's Radicale) knows nothing of Ann's collections.
        own = http.request("PROPFIND", f"{web}{bob.address}/", headers={"Depth": "1"})
        assert own.status_code == 207 and "Private" not in own.text
    assert [c.get_display_name() for c in caldav(web, bob).principal().calendars()] == []


def test_a_wrong_password_and_a_plan_without_calendars_are_refused(
    web: str, customers: dict[str, Customer]
) -> None:
    ann, cat = customers["ann"], customers["cat"]
    wrong = httpx.request("PROPFIND", f"{web}{ann.address}/", auth=(ann.address, "nope"))
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"].startswith("Basic")
    refused = httpx.request(
        "PROPFIND", f"{web}{cat.address}/", auth=(cat.address, support.PASSWORD)
    )
    assert refused.status_code == 403
    assert "no calendar and contacts" in refused.text


def test_only_calendar_plans_run_radicale(api: Kube, customers: dict[str, Customer]) -> None:
    def containers(c: Customer) -> list[str]:
        pod = support.tenant_pod(api, c.ns, c.name)
        return [x["name"] for x in pod["spec"]["containers"]]

    assert "dav" in containers(customers["ann"])
    assert "dav" not in containers(customers["cat"])
