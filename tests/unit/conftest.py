"""Shared factories of the unit tier: sample specs and plans, the repository root."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import PersonalMailServerSpec

REPO = Path(__file__).resolve().parents[2]

SpecFactory = Callable[..., PersonalMailServerSpec]
PlanFactory = Callable[..., MailPlanSpec]


def server_wire(**overrides: Any) -> dict[str, Any]:
    """A PersonalMailServer spec as the API server holds it (camelCase), with overrides."""
    spec: dict[str, Any] = {
        "plan": "personal",
        "owner": {"email": "alice@example.net", "name": "Alice Example"},
        "domains": ["example.org"],
        "mailboxes": [
            {
                "address": "alice@example.org",
                "quota": "1Gi",
                "aliases": ["postmaster", "abuse"],
                "passwordSecretRef": {"name": "alice-password", "key": "password"},
            },
            {"address": "bob@example.org"},
        ],
        "forwards": [{"from": "shop@example.org", "to": ["alice@example.net"]}],
    }
    spec.update(overrides)
    return spec


def plan_wire(**overrides: Any) -> dict[str, Any]:
    """A MailPlan spec (camelCase), with overrides."""
    spec: dict[str, Any] = {
        "displayName": "Personal",
        "resources": {"requests": {"cpu": "10m", "memory": "24Mi"}, "limits": {"memory": "96Mi"}},
        "storage": "2Gi",
        "maxDomains": 3,
        "maxMailboxes": 10,
        "defaultQuota": "512Mi",
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def make_spec() -> SpecFactory:
    """make_spec(domains=[...], mailboxes=[...]) → a validated PersonalMailServerSpec."""

    def make(**overrides: Any) -> PersonalMailServerSpec:
        return PersonalMailServerSpec.model_validate(server_wire(**overrides))

    return make


@pytest.fixture
def make_plan() -> PlanFactory:
    """make_plan(maxDomains=1, storage="1Gi") → a validated MailPlanSpec."""

    def make(**overrides: Any) -> MailPlanSpec:
        return MailPlanSpec.model_validate(plan_wire(**overrides))

    return make


@pytest.fixture
def spec_data() -> Callable[..., dict[str, Any]]:
    """spec_data(**overrides) → a raw PersonalMailServer spec dict (not validated)."""
    return server_wire


@pytest.fixture
def plan_data() -> Callable[..., dict[str, Any]]:
    """plan_data(**overrides) → a raw MailPlan spec dict (not validated)."""
    return plan_wire


@pytest.fixture
def repo_root() -> Path:
    return REPO
