"""The platform installed the way a provider installs it: ``helm install charts/vpes``
with the operator image (operator and billing) on the real node. The chart's
Deployments become Ready through their probes, two operator replicas elect one
leader through the Lease, the leader serves metrics, and a customer's server it
reconciles takes and serves mail."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from vpes_devcluster import Cluster, chart
from vpes_devcluster.node import build_images
from vpes_operator.clients.kube import Kube

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
