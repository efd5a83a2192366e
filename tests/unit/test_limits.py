"""limits.check: a server's spec against its plan's limits, with messages a person can act on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from vpes_operator.errors import ConfigError
from vpes_operator.limits import check
from vpes_operator.models.plan import MailPlanSpec
from vpes_operator.models.server import PersonalMailServerSpec

pytestmark = pytest.mark.unit

SpecFactory = Callable[..., PersonalMailServerSpec]
PlanFactory = Callable[..., MailPlanSpec]

PLAN = {"maxDomains": 2, "maxMailboxes": 2, "storage": "1Gi", "defaultQuota": "512Mi"}


def mbox(
    address: str, quota: str | None = None, aliases: list[str] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"address": address}
    if quota is not None:
        out["quota"] = quota
    if aliases is not None:
        out["aliases"] = aliases
    return out


@pytest.mark.parametrize(
    ("domains", "mailboxes", "plan"),
    [
        pytest.param(["example.org"], [], {}, id="nothing"),
        pytest.param(
            ["example.org", "example.net"],
            [mbox("a@example.org"), mbox("b@example.net")],
            {},
            id="exactly-at-the-limits",
        ),
        pytest.param(["example.org"], [mbox("a@example.org", "1Gi")], {}, id="quota-equals-volume"),
        pytest.param(
            ["example.org"], [mbox("a@example.org", "1000M")], {}, id="decimal-quota-under-1Gi"
        ),
        pytest.param(
            ["example.org"], [mbox("a@example.org")], {"defaultQuota": "1Gi"}, id="default-quota"
        ),
        pytest.param(
            ["example.org"],
            [mbox("a@example.org", aliases=["a", "a@example.org", "info", "b@example.org"])],
            {},
            id="aliases-to-itself-or-free-names",
        ),
    ],
)
def test_within_limits(
    make_spec: SpecFactory,
    make_plan: PlanFactory,
    domains: list[str],
    mailboxes: list[dict[str, Any]],
    plan: dict[str, Any],
) -> None:
    spec = make_spec(domains=domains, mailboxes=mailboxes, forwards=[])
    check("personal", spec, make_plan(**{**PLAN, **plan}))


@pytest.mark.parametrize(
    ("domains", "mailboxes", "plan", "reason", "fragments"),
    [
        pytest.param(
            ["a.example", "b.example", "c.example"],
            [],
            {},
            "PlanLimitExceeded",
            ["3 domains", "plan 'personal' allows 2"],
            id="domains",
        ),
        pytest.param(
            ["example.org"],
            [mbox("a@example.org"), mbox("b@example.org"), mbox("c@example.org")],
            {},
            "PlanLimitExceeded",
            ["3 mailboxes", "plan 'personal' allows 2"],
            id="mailboxes",
        ),
        pytest.param(
            ["example.org"],
            [mbox("a@example.org", "2Gi")],
            {},
            "PlanLimitExceeded",
            ["a@example.org", "2Gi", "1Gi"],
            id="quota-bigger-than-volume",
        ),
        pytest.param(
            ["example.org"],
            [mbox("a@example.org", "1100M")],
            {},
            "PlanLimitExceeded",
            ["a@example.org", "1100M", "1Gi"],
            id="decimal-quota-over-1Gi",
        ),
        pytest.param(
            ["example.org"],
            [mbox("alice@example.org", aliases=["bob"]), mbox("bob@example.org")],
            {},
            "InvalidMailboxes",
            ["'bob'", "alice@example.org", "bob@example.org"],
            id="bare-alias-is-a-mailbox",
        ),
        pytest.param(
            ["example.org", "example.net"],
            [mbox("alice@example.org", aliases=["bob@example.net"]), mbox("bob@example.net")],
            {},
            "InvalidMailboxes",
            ["'bob@example.net'", "alice@example.org"],
            id="full-alias-is-a-mailbox",
        ),
        pytest.param(
            ["example.org", "example.net"],
            [mbox("alice@example.org", aliases=["bob"]), mbox("bob@example.net")],
            {},
            "InvalidMailboxes",
            ["'bob'", "alice@example.org", "bob@example.net"],
            id="bare-alias-in-another-domain",
        ),
        pytest.param(
            ["a.example", "b.example", "c.example"],
            [mbox("x@a.example", "2Gi")],
            {},
            "PlanLimitExceeded",
            ["3 domains", "x@a.example", "2Gi"],
            id="every-problem-is-named",
        ),
    ],
)
def test_limit_exceeded(
    make_spec: SpecFactory,
    make_plan: PlanFactory,
    domains: list[str],
    mailboxes: list[dict[str, Any]],
    plan: dict[str, Any],
    reason: str,
    fragments: list[str],
) -> None:
    spec = make_spec(domains=domains, mailboxes=mailboxes, forwards=[])
    with pytest.raises(ConfigError) as info:
        check("personal", spec, make_plan(**{**PLAN, **plan}))
    err = info.value
    assert err.reason == reason
    for fragment in fragments:
        assert fragment in err.message
    assert "previous configuration keeps running" in err.message
    assert str(err) == err.message


def test_a_mailbox_may_forward_its_own_mail(make_spec: SpecFactory, make_plan: PlanFactory) -> None:
    """Its user's own forwarding (the panel's My mailbox): no objection here."""
    spec = make_spec(
        domains=["example.org"],
        mailboxes=[mbox("alice@example.org"), mbox("bob@example.org")],
        forwards=[
            {"from": "alice@example.org", "to": ["x@example.net", "alice@example.org"]},
            {"from": "shop@example.org", "to": ["x@example.net"]},
        ],
    )
    check("personal", spec, make_plan(**PLAN))


def test_sample_server_fits_the_sample_plan(make_spec: SpecFactory, make_plan: PlanFactory) -> None:
    check("personal", make_spec(), make_plan())


def test_default_quota_bigger_than_volume_names_the_quota(
    make_spec: SpecFactory, make_plan: PlanFactory
) -> None:
    spec = make_spec(domains=["example.org"], mailboxes=[mbox("a@example.org")], forwards=[])
    with pytest.raises(ConfigError) as info:
        check("personal", spec, make_plan(**{**PLAN, "defaultQuota": "2Gi"}))
    assert "None" not in info.value.message
    assert "2Gi" in info.value.message


def test_reason_does_not_depend_on_the_names_in_the_message(
    make_spec: SpecFactory, make_plan: PlanFactory
) -> None:
    spec = make_spec(
        domains=["example.org"],
        mailboxes=[mbox("a@example.org", aliases=["allows"]), mbox("allows@example.org")],
        forwards=[],
    )
    with pytest.raises(ConfigError) as info:
        check("personal", spec, make_plan(**PLAN))
    assert info.value.reason == "InvalidMailboxes"
