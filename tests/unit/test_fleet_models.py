"""The FleetUpgrade's spec as the operator parses it: counts and percentages, the image,
the selector as a query; and the tenant image a server's annotation picks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from vpes_operator.builders.meta import Owner
from vpes_operator.builders.workload import statefulset
from vpes_operator.handlers.events import event_body
from vpes_operator.models.fleet import FleetUpgradeSpec, LabelSelector, resolve

from .render_support import PLAN, SETTINGS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "total", "round_up", "expected"),
    [
        (3, 10, True, 3),
        (30, 10, False, 10),
        ("10%", 20, True, 2),
        ("10%", 15, True, 2),
        ("10%", 15, False, 1),
        ("1%", 20, False, 0),
        ("100%", 7, False, 7),
        ("0%", 7, True, 0),
    ],
)
def test_resolve(value: int | str, total: int, round_up: bool, expected: int) -> None:
    assert resolve(value, total, round_up=round_up) == expected


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"image": "r/t:1", "canary": "101%"}, "canary must be a number or a percentage"),
        ({"image": "r/t:1", "canary": -1}, "canary must be 0 or more"),
        ({"image": "r/t:1", "canary": "ten"}, "canary must be a number or a percentage"),
        ({"image": "r/t:1", "maxUnavailable": 0}, "maxUnavailable must be 1 or more"),
        ({"image": "r/t:1", "maxUnavailable": "0%"}, "from 1% to 100%"),
        ({"image": ""}, "String should match pattern"),
        ({"image": "r/t:1", "healthTimeoutSeconds": 1}, "greater than or equal to 10"),
    ],
)
def test_bad_specs_are_refused_with_a_message(spec: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        FleetUpgradeSpec.model_validate(spec)


def test_defaults() -> None:
    spec = FleetUpgradeSpec.model_validate({"image": "registry.test/vpes-tenant:2"})
    assert (spec.canary, spec.max_unavailable, spec.paused) == (1, "10%", False)
    assert spec.health_timeout_seconds == 600


def test_a_selector_becomes_the_api_s_label_query() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"tier": "gold", "region": "eu"},
            "matchExpressions": [
                {"key": "vpes.io/plan", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "NotIn", "values": ["no"]},
                {"key": "beta", "operator": "Exists"},
                {"key": "frozen", "operator": "DoesNotExist"},
            ],
        }
    )
    assert selector.query() == (
        "region=eu,tier=gold,vpes.io/plan in (a,b),canary notin (no),beta,!frozen"
    )


def _image(**kwargs: Any) -> str:
    owner = Owner(name="alice", namespace="customer-1", uid="0f3c2b1a", plan="personal")
    sts = statefulset(owner, PLAN, SETTINGS, suspended=False, **kwargs)
    containers = sts["spec"]["template"]["spec"]["containers"]
    return str(next(c for c in containers if c["name"] == "mail")["image"])


def test_the_workload_runs_the_server_s_own_image_else_the_fleet_s() -> None:
    assert _image() == SETTINGS.tenant_image
    assert _image(image=None) == SETTINGS.tenant_image
    assert _image(image="registry.test/vpes-tenant:2") == "registry.test/vpes-tenant:2"


def test_an_event_about_a_cluster_scoped_upgrade_goes_to_the_default_namespace() -> None:
    body = {
        "apiVersion": "vpes.io/v1alpha1",
        "kind": "FleetUpgrade",
        "metadata": {"name": "up", "uid": "u-1"},
    }
    event = event_body(
        body, "Normal", "WaveStarted", "wave 1", dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    )
    assert event["metadata"]["namespace"] == "default"
    assert "namespace" not in event["involvedObject"]
    assert event["involvedObject"]["name"] == "up"


def test_the_example_is_a_valid_upgrade(repo_root: Path) -> None:
    doc = yaml.safe_load((repo_root / "examples" / "fleetupgrade.yaml").read_text())
    assert doc["kind"] == "FleetUpgrade"
    spec = FleetUpgradeSpec.model_validate(doc["spec"])
    assert (spec.plans, spec.canary, spec.max_unavailable) == (["personal"], 1, "10%")
