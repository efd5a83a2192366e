"""Billing's quota: the namespace's ResourceQuota from a plan, its quantities doubled exactly."""

from __future__ import annotations

import pytest
from vpes_billing import builders
from vpes_billing.builders import quota
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.quantity import parse_quantity

pytestmark = pytest.mark.unit

pytestmark = pytest.mark.unit


def test_quota_from_plan() -> None:
    plan = MailPlanSpec.model_validate({"storage": "5Gi"})
    hard = quota(plan)
    assert hard["requests.storage"] == "5Gi"
    assert hard["requests.cpu"] == "20m" and hard["requests.memory"] == "64Mi"
    assert hard["limits.memory"] == "256Mi" and hard["services.loadbalancers"] == "0"
    dedicated = MailPlanSpec.model_validate({"features": {"dedicatedAddress": True}})
    assert quota(dedicated)["services.loadbalancers"] == "1"


@pytest.mark.parametrize(
    ("quantity", "doubled"),
    [
        ("50m", "100m"),
        ("1500m", "3000m"),
        ("1.5", "3"),
        ("0.3", "0.6"),
        ("2", "4"),
        ("256Mi", "512Mi"),
        ("1Gi", "2Gi"),
        ("0.75Gi", "1.5Gi"),
        ("100k", "200k"),
        ("128974848", "257949696"),  # not "2.5795e+08", which is no quantity
        ("1e3", "2000"),
    ],
)
def test_quota_doubles_quantities_exactly(quantity: str, doubled: str) -> None:
    assert builders._double(quantity) == doubled
    assert parse_quantity(doubled) == 2 * parse_quantity(quantity)


def test_quota_doubling_refuses_what_is_no_quantity() -> None:
    with pytest.raises(ValueError, match="lots"):
        builders._double("lots")
