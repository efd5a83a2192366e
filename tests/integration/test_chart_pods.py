"""The chart's own pods: a NetworkPolicy each that admits only the ports they serve,
and images that can be pinned by digest."""

from __future__ import annotations

from typing import Any

import pytest

from .chart_support import CHART, helm, render

DIGEST = "sha256:" + "0123456789abcdef" * 4
POLICIES = "templates/networkpolicies.yaml"
DEPLOYMENTS = {
    "operator": "templates/operator-deployment.yaml",
    "billing": "templates/billing-deployment.yaml",
}


def deployment(cluster: Any, component: str, *args: str) -> dict[str, Any]:
    return next(
        o for o in render(cluster, DEPLOYMENTS[component], *args) if o["kind"] == "Deployment"
    )


@pytest.mark.parametrize("component", ["operator", "billing"])
def test_each_pod_admits_only_the_ports_it_serves(cluster: Any, component: str) -> None:
    policies = {o["metadata"]["name"]: o for o in render(cluster, POLICIES)}
    policy = policies[f"r-{component}"]["spec"]
    pod = deployment(cluster, component)["spec"]["template"]
    wanted = policy["podSelector"]["matchLabels"]
    assert wanted.items() <= pod["metadata"]["labels"].items(), "the policy misses its pods"
    assert policy["policyTypes"] == ["Ingress"]
    served = {p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    (rule,) = policy["ingress"]
    assert {p["port"] for p in rule["ports"]} == served, "admits more, or less, than served"
    # Probes reach a port the policy admits.
    for container in pod["spec"]["containers"]:
        for probe in ("livenessProbe", "readinessProbe"):
            port = container[probe]["httpGet"]["port"]
            named = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            assert named.get(port, port) in served, (probe, port)
    # The other component's pods are not selected by this policy.
    other = deployment(cluster, "billing" if component == "operator" else "operator")
    assert not wanted.items() <= other["spec"]["template"]["metadata"]["labels"].items()


def test_policies_can_be_turned_off(cluster: Any) -> None:
    assert render(cluster, POLICIES, "--set", "networkPolicy.enabled=false") == []


@pytest.mark.parametrize("component", ["operator", "billing"])
def test_images_pinned_by_digest(cluster: Any, component: str) -> None:
    tagged = deployment(cluster, component)["spec"]["template"]["spec"]["containers"][0]
    assert tagged["image"] == "localhost/vpes-operator:0.1.0"
    pinned = deployment(cluster, component, "--set", f"{component}.image.digest={DIGEST}")
    image = pinned["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"localhost/vpes-operator@{DIGEST}"


def test_a_malformed_digest_fails_at_install_naming_the_value(cluster: Any) -> None:
    out = helm(
        cluster,
        "template",
        "r",
        str(CHART),
        "--set",
        "operator.image.digest=sha256:abc",
        check=False,
    )
    assert out.returncode != 0 and "/operator/image/digest" in out.stderr
