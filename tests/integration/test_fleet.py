"""Fleet upgrades against the real API server: the CRD refuses bad input, and the
controller (as the chart's ServiceAccount) moves 20 servers' images wave by wave,
waits for a server whose backup runs, leaves another upgrade's server alone, and rolls
a failing canary back.

No tenant runs in this tier (kwok's nodes only pretend to run pods, and the test host
cannot reach Services), so no server can pass the live gate: the gate here is a stand-in
(`GateStandIn`) that passes a server once the API says it runs the image, and fails the
servers a test names. The live gate (pod on the image and ready, SMTP 220, IMAP `* OK`
through the Service) is run by the operator in test_fleet_operator.py (where it must
fail) and passes only on the real node. The operator's timer is not run here; the
tests call the controller's `step`, the one function that timer calls.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import ApiError, Kube
from vpes_operator.fleet import controller, planner
from vpes_operator.fleet.packages import Packages
from vpes_operator.fleet.report import PackageListError
from vpes_operator.models.fleet import FleetUpgrade

from .operator_support import install_platform, server_body

OLD = "registry.test/vpes-tenant:1"
NEW = "registry.test/vpes-tenant:2"
T0 = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def operator_kube(cluster: Any) -> Kube:
    """The product's client with the chart's operator ServiceAccount (its RBAC)."""
    kubeconfig: Path = install_platform(cluster)
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return Kube(client, field_manager="vpes-operator")


def upgrade_body(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "FleetUpgrade",
        "metadata": {"name": name},
        "spec": {"image": NEW, **spec},
    }


@pytest.fixture
def upgrades(api: Kube) -> Iterator[list[str]]:
    """Names of the FleetUpgrades a test made (cluster-scoped: deleted after it)."""
    made: list[str] = []
    yield made
    for name in made:
        api.delete(API_VERSION, "FleetUpgrade", None, name)


def create_upgrade(api: Kube, upgrades: list[str], **spec: Any) -> str:
    name = f"up-{uuid.uuid4().hex[:6]}"
    api.create(upgrade_body(name, **spec))
    upgrades.append(name)
    return name


# --- the schema ------------------------------------------------------------------------

INVALID = [
    ({"canary": "150%"}, "canary must be a number of servers (0 or more) or a percentage"),
    ({"canary": -2}, "canary must be a number of servers (0 or more)"),
    ({"maxUnavailable": 0}, "maxUnavailable must be a number of servers (1 or more)"),
    ({"maxUnavailable": "0%"}, "or a percentage from 1% to 100%"),
    ({"image": ""}, "must be a tenant image reference"),
    ({"image": "https://registry.test/t:1"}, "must be a tenant image reference"),
    ({"healthTimeoutSeconds": 1}, "should be greater than or equal to 10"),
    (
        {"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
        'supported values: "In", "NotIn", "Exists", "DoesNotExist"',
    ),
]


@pytest.mark.parametrize(("spec", "message"), INVALID)
def test_the_api_server_refuses_a_bad_upgrade_with_a_clear_message(
    operator_kube: Kube, api: Kube, upgrades: list[str], spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiError) as refused:
        create_upgrade(api, upgrades, **spec)
    assert refused.value.status == 422
    assert message in json.loads(refused.value.body)["message"]


def test_defaults_and_the_fixed_image(operator_kube: Kube, api: Kube, upgrades: list[str]) -> None:
    name = create_upgrade(api, upgrades)
    got = api.get(API_VERSION, "FleetUpgrade", None, name)
    assert got is not None
    spec = got["spec"]
    assert (spec["canary"], spec["maxUnavailable"], spec["paused"]) == (1, "10%", False)
    assert spec["healthTimeoutSeconds"] == 600
    with pytest.raises(ApiError) as refused:
        api.apply({**upgrade_body(name), "spec": {**spec, "image": "registry.test/other:3"}})
    assert "image cannot change once the upgrade exists" in refused.value.body
    api.apply({**upgrade_body(name), "spec": {**spec, "paused": True, "canary": "20%"}})


def test_the_example_is_accepted(operator_kube: Kube, api: Kube) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "fleetupgrade.yaml"
    created = api.create(yaml.safe_load(example.read_text()), dry_run=True)
    assert created["spec"]["plans"] == ["personal"]


# --- the controller ---------------------------------------------------------------------


class GateStandIn:
    """The health gate without a kubelet: a server passes when the API says it runs
    the image, unless the test named it as failing."""

    def __init__(self, kube: Kube, failing: set[str] | None = None) -> None:
        self.kube = kube
        self.failing = failing or set()
        self.checked: list[str] = []

    def check(self, namespace: str, server: str, image: str) -> planner.Health:
        self.checked.append(server)
        obj = self.kube.get(API_VERSION, "PersonalMailServer", namespace, server)
        annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
        if annotations.get(naming.ANNOTATION_TENANT_IMAGE) != image:
            return planner.Health(False, f"no pod runs {image} yet")
        if server in self.failing:
            return planner.Health(False, f"SMTP on {server}:25 did not answer: refused")
        return planner.Health(True)


# The images' package lists, as their usage reports would give them.
OLD_PACKAGES = {"dovecot-core": "1:2.3.19.1+dfsg1-2.1+deb12u1", "postfix": "3.7.10-0+deb12u1"}
NEW_PACKAGES = {
    "dovecot-core": "1:2.3.19.1+dfsg1-2.1+deb12u7",
    "postfix": "3.7.11-0+deb12u1",
    "curl": "7.88.1-10+deb12u14",
}
OLD_TO_NEW = {
    "fromImage": OLD,
    "toImage": NEW,
    "summary": "2 upgraded, 1 added",
    "upgraded": [
        {
            "name": "dovecot-core",
            "from": OLD_PACKAGES["dovecot-core"],
            "to": NEW_PACKAGES["dovecot-core"],
        },
        {"name": "postfix", "from": "3.7.10-0+deb12u1", "to": "3.7.11-0+deb12u1"},
    ],
    "downgraded": [],
    "added": [{"name": "curl", "version": "7.88.1-10+deb12u14"}],
    "removed": [],
    "omitted": 0,
}


class ReportStandIn:
    """The servers' usage reports without a kubelet: a server gives the list of the
    image the API says it runs (none for an image `lists` lacks)."""

    def __init__(self, kube: Kube, lists: dict[str, Packages]) -> None:
        self.kube = kube
        self.lists = lists
        self.read_from: list[tuple[str, str]] = []

    def read(self, namespace: str, server: str, image: str) -> Packages:
        obj = self.kube.get(API_VERSION, "PersonalMailServer", namespace, server)
        annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
        if (annotations.get(naming.ANNOTATION_TENANT_IMAGE) or OLD) != image:
            raise PackageListError(f"{namespace}/{server}: no pod runs {image}")
        if image not in self.lists:
            raise PackageListError(f"{namespace}/{server}: {image} records no package list")
        self.read_from.append((server, image))
        return self.lists[image]


def make_servers(api: Kube, namespace: str, count: int, labels: dict[str, str]) -> list[str]:
    names = [f"s{i:02d}" for i in range(count)]
    for name in names:
        body = server_body(
            name,
            namespace,
            {
                "plan": "gold",
                "owner": {"email": "owner@example.net"},
                "domains": [f"{name}.example.org"],
                "mailboxes": [{"address": f"a@{name}.example.org"}],
            },
        )
        body["metadata"]["labels"] = labels
        api.create(body)
    return names


def images(api: Kube, namespace: str) -> dict[str, str | None]:
    return {
        s["metadata"]["name"]: (s["metadata"].get("annotations") or {}).get(
            naming.ANNOTATION_TENANT_IMAGE
        )
        for s in api.list(API_VERSION, "PersonalMailServer", namespace)
    }


def claims(api: Kube, namespace: str) -> dict[str, str]:
    out = {}
    for s in api.list(API_VERSION, "PersonalMailServer", namespace):
        claim = (s["metadata"].get("annotations") or {}).get(naming.ANNOTATION_UPGRADE)
        if claim:
            out[s["metadata"]["name"]] = claim
    return out


def advance(
    kube: Kube,
    name: str,
    gate: GateStandIn,
    now: dt.datetime,
    reports: ReportStandIn | None = None,
) -> planner.Plan:
    raw = kube.get(API_VERSION, "FleetUpgrade", None, name)
    upgrade = FleetUpgrade.model_validate(raw)
    reader = reports or ReportStandIn(kube, {OLD: OLD_PACKAGES, NEW: NEW_PACKAGES})
    return controller.step(kube, upgrade, gate, reader, default_image=OLD, now=now)


def status(api: Kube, name: str) -> dict[str, Any]:
    got = api.get(API_VERSION, "FleetUpgrade", None, name)
    assert got is not None
    return dict(got.get("status") or {})


def backup_job(api: Kube, namespace: str, server: str) -> str:
    """A backup Job of the server, as backup/jobs.py labels it; with no node its pod
    never runs, so it stays Running until deleted."""
    name = f"{server}-backup-test"
    api.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {naming.LABEL_SERVER: server, naming.LABEL_COMPONENT: "backup"},
            },
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "backup", "image": "registry.test/backup:1"}],
                    }
                }
            },
        }
    )
    return name


def test_twenty_servers_move_wave_by_wave_and_a_backup_waits(
    operator_kube: Kube, api: Kube, namespace: str, upgrades: list[str]
) -> None:
    names = make_servers(api, namespace, 20, {"fleet-test": namespace})
    make_servers_other = server_body(
        "other", namespace, {"plan": "gold", "owner": {"email": "o@example.net"}}
    )
    make_servers_other["spec"].update(
        {"domains": ["other.example.org"], "mailboxes": [{"address": "a@other.example.org"}]}
    )
    api.create(make_servers_other)  # not selected: not labelled
    job = backup_job(api, namespace, "s01")
    name = create_upgrade(
        api,
        upgrades,
        selector={"matchLabels": {"fleet-test": namespace}},
        canary=2,
        maxUnavailable="25%",
    )
    gate = GateStandIn(operator_kube)
    now = T0

    advance(operator_kube, name, gate, now)
    got = status(api, name)
    assert (got["phase"], got["currentWave"]) == ("Canary", 1)
    assert "packages" not in got  # known once the canary passes
    assert [m["name"] for m in got["wave"]] == ["s00", "s02"]  # s01's backup runs: it waits
    assert sorted(k for k, v in images(api, namespace).items() if v == NEW) == ["s00", "s02"]
    assert claims(api, namespace) == {"s00": name, "s02": name}

    upgraded = 2
    for wave, size in zip(range(2, 6), [5, 5, 5, 3], strict=True):
        now += dt.timedelta(seconds=10)
        if wave == 3:
            api.delete("batch/v1", "Job", namespace, job, propagation="Background")
        advance(operator_kube, name, gate, now)
        got = status(api, name)
        assert (got["phase"], got["currentWave"], got["upgraded"]) == ("Rolling", wave, upgraded)
        moved = [m["name"] for m in got["wave"]]
        assert len(moved) == size  # 25% of 20, and the 3 left
        assert ("s01" in moved) == (wave == 3)  # moves in the first wave after its backup
        assert got["packages"] == OLD_TO_NEW  # from the canary and a server still on OLD
        upgraded += len(moved)
        on_new = {k for k, v in images(api, namespace).items() if v == NEW}
        assert len(on_new) == upgraded and set(moved) <= on_new
    advance(operator_kube, name, gate, now + dt.timedelta(seconds=10))
    got = status(api, name)
    assert got["phase"] == "Succeeded", got
    assert (got["upgraded"], got["pending"], got["failed"], got["total"]) == (20, 0, 0, 20)
    assert {k: v for k, v in images(api, namespace).items()} == {
        **dict.fromkeys(names, NEW),
        "other": None,
    }
    assert claims(api, namespace) == {}  # given back at the end
    assert get_row(api, name) | {"Age": None} == {
        "Name": name,
        "Image": NEW,
        "Rules": None,  # an antispam upgrade's (test_fleet_antispam.py)
        "Phase": "Succeeded",
        "Wave": 5,
        "Upgraded": 20,
        "Pending": 0,
        "Failed": 0,
        "Total": 20,
        "Paused": False,
        "Packages": "2 upgraded, 1 added",
        "Age": None,
        "Message": f"20 servers run {NEW}",
    }


def get_row(api: Kube, name: str) -> dict[str, Any]:
    """The upgrade as `kubectl get fleetupgrades -o wide` shows it (the server's table)."""
    table = api.request(
        "GET",
        f"/apis/{API_VERSION}/fleetupgrades/{name}",
        accept="application/json;as=Table;v=v1;g=meta.k8s.io",
    )
    columns = [c["name"] for c in table["columnDefinitions"]]
    return dict(zip(columns, table["rows"][0]["cells"], strict=True))


def test_a_failing_canary_is_rolled_back_and_another_upgrade_s_server_is_left_alone(
    operator_kube: Kube, api: Kube, namespace: str, upgrades: list[str]
) -> None:
    make_servers(api, namespace, 6, {"fleet-test": namespace})
    api.patch_metadata(  # s00 already runs its own image
        API_VERSION,
        "PersonalMailServer",
        namespace,
        "s00",
        {"annotations": {naming.ANNOTATION_TENANT_IMAGE: "registry.test/vpes-tenant:0"}},
    )
    selector = {"matchLabels": {"fleet-test": namespace}}
    first = create_upgrade(api, upgrades, selector=selector, canary=1, image=OLD)
    advance(operator_kube, first, GateStandIn(operator_kube), T0)  # claims s00 for OLD
    assert claims(api, namespace) == {"s00": first}

    name = create_upgrade(
        api,
        upgrades,
        selector=selector,
        plans=["gold"],
        canary=2,
        maxUnavailable=2,
        healthTimeoutSeconds=60,
    )
    gate = GateStandIn(operator_kube, failing={"s02"})
    advance(operator_kube, name, gate, T0)
    got = status(api, name)
    assert [m["name"] for m in got["wave"]] == ["s01", "s02"]
    assert [(r["name"], r["reason"]) for r in got["refused"]] == [("s00", "ClaimedByOther")]
    assert first in got["refused"][0]["message"]

    advance(operator_kube, name, gate, T0 + dt.timedelta(seconds=30))
    assert status(api, name)["phase"] == "Canary"  # within the gate's timeout: waits
    advance(operator_kube, name, gate, T0 + dt.timedelta(seconds=61))
    got = status(api, name)
    assert got["phase"] == "RolledBack"
    assert "s02: SMTP on s02:25 did not answer" in got["message"]
    assert f"rolled back {namespace}/s01, {namespace}/s02" in got["message"]
    assert [(f["name"], f["reason"]) for f in got["failures"]] == [("s02", "HealthGateFailed")]
    assert got["failed"] == 1 and got["upgraded"] == 0
    now = images(api, namespace)
    assert (now["s01"], now["s02"]) == (None, None)  # back to the fleet's image
    assert claims(api, namespace) == {"s00": first}  # its claims given back, not others'
    assert now["s00"] == OLD  # the other upgrade's canary, untouched


def test_the_package_list_of_the_image_left_is_remembered_from_the_canary(
    operator_kube: Kube, api: Kube, namespace: str, upgrades: list[str]
) -> None:
    """One server, the canary: no other server runs the image it left, so that image's
    list is the one read from the canary before it moved; an image without a list says
    so in the status."""
    make_servers(api, namespace, 1, {"fleet-test": namespace})
    name = create_upgrade(api, upgrades, selector={"matchLabels": {"fleet-test": namespace}})
    gate = GateStandIn(operator_kube)
    reports = ReportStandIn(operator_kube, {OLD: OLD_PACKAGES, NEW: NEW_PACKAGES})
    advance(operator_kube, name, gate, T0, reports)
    assert reports.read_from == [("s00", OLD)]  # before it moved
    advance(operator_kube, name, gate, T0 + dt.timedelta(seconds=10), reports)
    got = status(api, name)
    assert got["phase"] == "Succeeded"
    assert got["packages"] == OLD_TO_NEW
    assert reports.read_from == [("s00", OLD), ("s00", NEW)]

    other = create_upgrade(
        api,
        upgrades,
        selector={"matchLabels": {"fleet-test": namespace}},
        image="registry.test/vpes-tenant:3",
    )
    unlisted = ReportStandIn(operator_kube, {NEW: NEW_PACKAGES})  # :3 records no list
    advance(operator_kube, other, gate, T0, unlisted)
    advance(operator_kube, other, gate, T0 + dt.timedelta(seconds=10), unlisted)
    got = status(api, other)
    assert got["phase"] == "Succeeded"
    assert got["packages"]["summary"] == ""
    assert got["packages"]["message"] == (
        "the package list of registry.test/vpes-tenant:3 could not be read: "
        f"{namespace}/s00: registry.test/vpes-tenant:3 records no package list"
    )
