"""The models on the wire: camelCase, no unset optionals, round trips; conditions; examples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from vpes_operator.models import KINDS_BY_NAME
from vpes_operator.models.conditions import Condition
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import PersonalMailServerSpec

from .test_models import refused

pytestmark = pytest.mark.unit

Data = Callable[..., dict[str, Any]]


def test_server_wire_is_camel_case_without_none(spec_data: Data) -> None:
    spec = PersonalMailServerSpec.model_validate(
        spec_data(owner={"email": "alice@example.net"})  # no name: None on the model
    )
    wire = spec.wire()
    assert wire == {
        "plan": "personal",
        "owner": {"email": "alice@example.net"},
        "domains": ["example.org"],
        "mailboxes": [
            {
                "address": "alice@example.org",
                "quota": "1Gi",
                "aliases": ["postmaster", "abuse"],
                "passwordSecretRef": {"name": "alice-password", "key": "password"},
            },
            {"address": "bob@example.org", "aliases": []},
        ],
        "forwards": [{"from": "shop@example.org", "to": ["alice@example.net"]}],
        "catchAll": [],
        "dns": {"mode": "Managed"},
        "suspended": False,
        "panel": {"admins": [], "requireTOTP": False},
    }


def test_plan_wire_is_camel_case_without_none(plan_data: Data) -> None:
    wire = MailPlanSpec.model_validate(plan_data(displayName=None)).wire()
    assert "displayName" not in wire
    assert "storageClassName" not in wire
    assert "stripePriceId" not in wire
    assert wire["maxDomains"] == 3
    assert wire["defaultQuota"] == "512Mi"
    assert wire["maxMessageSize"] == "25Mi"
    assert wire["outboundPerHour"] == 200
    assert wire["features"]["dedicatedAddress"] is False
    assert wire["features"]["antispam"] == "Standard"
    assert wire["resources"] == {
        "requests": {"cpu": "10m", "memory": "24Mi"},
        "limits": {"memory": "96Mi"},
    }


def _snake_keys(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [k for k in node if "_" in k] + [s for v in node.values() for s in _snake_keys(v)]
    if isinstance(node, list):
        return [s for v in node for s in _snake_keys(v)]
    return []


def test_wire_round_trips(spec_data: Data, plan_data: Data) -> None:
    for model, data in ((PersonalMailServerSpec, spec_data()), (MailPlanSpec, plan_data())):
        obj = model.model_validate(data)
        wire = obj.wire()
        assert _snake_keys(wire) == []
        assert model.model_validate(wire) == obj
        assert model.model_validate(wire).wire() == wire


def test_snake_case_names_are_accepted_in_python(spec_data: Data) -> None:
    """populate_by_name: code may build models with field names; the wire stays camelCase."""
    data = spec_data()
    data["mailboxes"][0]["password_secret_ref"] = data["mailboxes"][0].pop("passwordSecretRef")
    spec = PersonalMailServerSpec.model_validate(data)
    assert "passwordSecretRef" in spec.wire()["mailboxes"][0]


def test_condition_wire() -> None:
    c = Condition.model_validate(
        {
            "type": "Ready",
            "status": "True",
            "reason": "MailServerRunning",
            "lastTransitionTime": "2026-03-01T12:00:00Z",
        }
    )
    assert c.wire() == {
        "type": "Ready",
        "status": "True",
        "reason": "MailServerRunning",
        "message": "",
        "lastTransitionTime": "2026-03-01T12:00:00Z",
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", "ready"),
        ("status", "true"),
        ("reason", "not a constant"),
        ("reason", ""),
        ("lastTransitionTime", "yesterday"),
        ("observedGeneration", -1),
    ],
)
def test_invalid_conditions(field: str, value: Any) -> None:
    data = {
        "type": "Ready",
        "status": "True",
        "reason": "Running",
        "lastTransitionTime": "2026-03-01T12:00:00Z",
        field: value,
    }
    refused(Condition, data, (field,))


def _examples(repo_root: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted((repo_root / "examples").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_examples_are_valid(repo_root: Path) -> None:
    seen = set()
    for doc in _examples(repo_root):
        kind = KINDS_BY_NAME.get(doc["kind"])
        if kind is None:
            continue
        seen.add(doc["kind"])
        spec = kind.spec.model_validate(doc["spec"])
        # Nothing the example says is lost or renamed on the wire.
        wire = spec.wire()
        for key, value in doc["spec"].items():
            assert key in wire, f"{doc['kind']} {doc['metadata']['name']}: {key} lost"
            if not isinstance(value, (dict, list)):
                assert wire[key] == value
    assert {"MailPlan", "PersonalMailServer"} <= seen
