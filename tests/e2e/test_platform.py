"""The platform installed the way a provider installs it: ``helm install charts/vpes``
with the operator image (operator and billing) on the real node. The chart's
Deployments become Ready through their probes, two operator replicas elect one
leader through the Lease, the leader serves metrics, and a customer's server it
reconciles takes and serves mail. A FleetUpgrade moves servers to a new image wave
by wave through the real health gate, and one whose image cannot run is rolled back
at its canary."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from vpes_devcluster import Cluster, chart
from vpes_devcluster.node import build_images
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_operator.models.fleet import TERMINAL

from tests.e2e import support
from tests.integration.operator_support import wait_for, wait_ready

RELEASE = "platform"  # not "vpes": the other modules' operators use the chart's RBAC as "vpes"
NAMESPACE = "vpes-platform"


@pytest.fixture(scope="module")
def platform(cluster: Cluster, core: client.CoreV1Api, images: dict[str, str]) -> Iterator[str]:
    operator_image = build_images("operator")["operator"]
    cluster.real_node().import_images([operator_image])
    values = chart.values(
        operator_image, images["tenant"], images["backup"], bcrypt_rounds=4, dkim_key_bits=1024
    )
    values["tenant"]["readinessPeriodSeconds"] = support.READINESS_SECONDS
    chart.install(cluster, RELEASE, NAMESPACE, values)
    try:
        yield NAMESPACE
    finally:
        chart.uninstall(cluster, RELEASE, NAMESPACE)
        core.delete_namespace(NAMESPACE)


def _pods(api: Kube, component: str) -> list[dict[str, Any]]:
    return api.list("v1", "Pod", NAMESPACE, labels=f"vpes.io/component={component}")


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_chart_installed_platform_elects_a_leader_and_runs_a_customer(
    cluster: Cluster, api: Kube, platform: str, namespace: str
) -> None:
    operators = _pods(api, "operator")
    # Both replicas run (their liveness answers on a standby too); the Deployment is
    # available through the leader's readiness.
    assert len(operators) == 2
    assert all((p.get("status") or {}).get("phase") == "Running" for p in operators)
    assert any(_ready(p) for p in operators)
    assert all(_ready(p) for p in _pods(api, "billing"))
    names = {p["metadata"]["name"] for p in operators}

    def holder() -> str | None:
        out = cluster.kubectl(
            "get", "lease", "vpes-operator", "-n", NAMESPACE,
            "-o", "jsonpath={.spec.holderIdentity}", check=False,
        )  # fmt: skip
        return out.stdout.strip() if out.stdout.strip() in names else None

    leader = wait_for(holder, "one operator replica holding the Lease", timeout=120)
    leader_ip = next(p for p in operators if p["metadata"]["name"] == leader)["status"]["podIP"]

    plan = support.small_plan(api)
    address = support.create_server(api, namespace, "erin", plan, "erin.example")
    wait_ready(api, namespace, "erin", timeout=240)
    host = support.service_ip(api, namespace, "erin")
    support.send(host, "carol@erin.example", address, "via the chart")
    support.wait_subjects(host, address, ["via the chart"])

    with urllib.request.urlopen(f"http://{leader_ip}:9090/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    assert "vpes_" in metrics


def _fleet_upgrade(api: Kube, plan: str, image: str, **spec: Any) -> str:
    name = f"fup-{uuid.uuid4().hex[:6]}"
    api.apply(
        {
            "apiVersion": API_VERSION,
            "kind": "FleetUpgrade",
            "metadata": {"name": name},
            "spec": {"image": image, "plans": [plan], "canary": 1, **spec},
        }
    )
    return name


def _ended(api: Kube, name: str, what: str, timeout: float) -> dict[str, Any]:
    """The FleetUpgrade's status once its phase is a final one."""

    def final() -> dict[str, Any] | None:
        obj = api.get(API_VERSION, "FleetUpgrade", None, name)
        status = (obj or {}).get("status") or {}
        return status if status.get("phase") in TERMINAL else None

    return wait_for(final, what, timeout=timeout, interval=3)


def _mail_image(api: Kube, namespace: str, server: str) -> str:
    pod = support.tenant_pod(api, namespace, server)
    return str(next(c["image"] for c in pod["spec"]["containers"] if c["name"] == "mail"))


def test_a_fleet_upgrade_moves_servers_wave_by_wave_and_rolls_a_bad_image_back(
    cluster: Cluster, api: Kube, platform: str, namespace: str, images: dict[str, str]
) -> None:
    """The chart's operator moves two servers to a new image (the canary, then the
    rest), each passing the health gate for real (its pod on the image, SMTP and IMAP
    answering through its Service); then an image that cannot run stops at the canary,
    which goes back to its image with its mail."""
    node = cluster.real_node()
    good = images["tenant"] + "-fleet"
    node.ctr("images", "tag", "--force", images["tenant"], good)
    # An image whose pod never runs the mail server: the gate must fail.
    bad = next(r for r in node.ctr("images", "ls", "-q").split() if "/vpes-pause:" in r)
    plan = support.small_plan(api)
    servers = {
        name: support.create_server(api, namespace, name, plan, f"{name}.example")
        for name in ("fay", "gil")
    }
    for name in servers:
        wait_ready(api, namespace, name, timeout=240)
    host = support.service_ip(api, namespace, "fay")
    support.send(host, "carol@fay.example", servers["fay"], "before the upgrades")
    support.wait_subjects(host, servers["fay"], ["before the upgrades"])

    moved = _fleet_upgrade(api, plan, good, maxUnavailable=1, healthTimeoutSeconds=240)
    done = _ended(api, moved, "the good upgrade to end", timeout=420)
    assert done["phase"] == "Succeeded", done
    assert (done["upgraded"], done["currentWave"]) == (2, 2), done
    assert {_mail_image(api, namespace, n) for n in servers} == {good}

    # The pause image never answers SMTP: its gate fails when its time is up, however
    # long that is, so 15 s prove the same as more.
    stopped = _fleet_upgrade(api, plan, bad, maxUnavailable=2, healthTimeoutSeconds=15)
    done = _ended(api, stopped, "the bad upgrade to end", timeout=300)
    assert done["phase"] == "RolledBack", done
    assert done["currentWave"] == 1 and [f["reason"] for f in done["failures"]] == [
        "HealthGateFailed"
    ], done
    # The canary (servers go in namespace-then-name order) is back on the good image
    # with its mail; the other never moved.
    assert done["failures"][0]["name"] == "fay", done
    wait_for(
        lambda: _mail_image(api, namespace, "fay") == good,
        "the canary's pod back on its image",
        timeout=240,
        interval=3,
    )
    assert _mail_image(api, namespace, "gil") == good
    host = support.service_ip(api, namespace, "fay")
    support.wait_subjects(host, servers["fay"], ["before the upgrades"], timeout=180)
    events = cluster.kubectl(
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        f"involvedObject.name={stopped}",
        "-o",
        "name",
        check=False,
    )
    assert events.stdout.strip(), "no event on the rolled back upgrade"
