"""The chart's calendar and contacts values: the DAV image and resources reach the
operator's settings, and the labels it admits to a tenant's DAV port are exactly the
vpes-web pods' (no other pod of the chart carries them). Rendered with `helm template`
(no cluster)."""

from __future__ import annotations

from typing import Any

import pytest
from vpes_operator.settings import OperatorSettings

from .helm_template import Doc, one, refusal, render

pytestmark = pytest.mark.integration
CONFIG = "templates/operator-config.yaml"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def settings_of(helm: str, *sets: str) -> tuple[dict[str, str], OperatorSettings]:
    (config,) = render(helm, CONFIG, *sets)
    data: dict[str, str] = config["data"]
    return data, OperatorSettings.from_env(data)


def test_the_default_dav_values_become_the_operator_settings(helm: str) -> None:
    data, settings = settings_of(helm)
    assert {k: v for k, v in data.items() if k.startswith("VPES_DAV_")} == {
        "VPES_DAV_IMAGE": "localhost/vpes-dav:0.1.0",
        "VPES_DAV_CPU_REQUEST": "10m",
        "VPES_DAV_MEMORY_REQUEST": "32Mi",
        "VPES_DAV_MEMORY_LIMIT": "128Mi",
    }
    assert settings.dav_image == "localhost/vpes-dav:0.1.0"
    assert (settings.dav_cpu_request, settings.dav_memory_request) == ("10m", "32Mi")
    assert settings.dav_memory_limit == "128Mi"


def test_the_dav_image_and_resources_are_set_like_the_tenant_image(helm: str) -> None:
    _, settings = settings_of(
        helm,
        f"dav.image=registry.example.net/vpes-dav@{DIGEST}",
        "dav.resources.requests.cpu=25m",
        "dav.resources.requests.memory=40Mi",
        "dav.resources.limits.memory=256Mi",
        "tenant.imagePullPolicy=Never",
    )
    assert settings.dav_image == f"registry.example.net/vpes-dav@{DIGEST}"
    assert (settings.dav_cpu_request, settings.dav_memory_request) == ("25m", "40Mi")
    assert settings.dav_memory_limit == "256Mi"
    # One pull policy for the tenant pod's two containers.
    assert settings.image_pull_policy == "Never"


def _pod_labels(docs: list[Doc]) -> dict[str, dict[str, str]]:
    """Every pod template's labels, by its workload's kind/name."""
    out: dict[str, dict[str, str]] = {}
    for d in docs:
        template: dict[str, Any] = d.get("spec", {}).get("template", {})
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet") and template:
            out[f"{d['kind']}/{d['metadata']['name']}"] = template["metadata"]["labels"]
    return out


def test_only_the_web_pods_carry_the_labels_the_dav_port_admits(helm: str) -> None:
    docs = render(helm, None)
    _, settings = settings_of(helm)
    web = one(docs, "Deployment", "vpes-web")
    # The web Deployment's own selector: what its pods are known by.
    assert settings.web_pod_labels == web["spec"]["selector"]["matchLabels"]
    assert settings.web_pod_labels["app.kubernetes.io/instance"] == "vpes"
    admitted = [
        name
        for name, labels in _pod_labels(docs).items()
        if settings.web_pod_labels.items() <= labels.items()
    ]
    assert admitted == ["Deployment/vpes-web"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("dav.image=", "/dav/image"),
        ("dav.resources.limits.memory=1.5Gi", "/dav/resources/limits/memory"),
        ("dav.resources.requests.memory=500m", "/dav/resources/requests/memory"),
        ("dav.resources.requests.cpu=fast", "/dav/resources/requests/cpu"),
        ("dav.resources.limits.cpu=1", "cpu"),
        ("dav.replicas=2", "replicas"),
    ],
)
def test_the_values_schema_refuses_bad_dav_values(helm: str, setting: str, message: str) -> None:
    assert message in refusal(helm, setting)
