"""The API server refuses bad input with a message a person can act on: one case per rule.

No operator is needed: the CRDs' schemas (generated from the pydantic models)
carry every rule, so these run against the real API server alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from vpes_devcluster.platform import install_crds
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError, Kube

from .operator_support import get_server, plan_body, server_body


@pytest.fixture(scope="module", autouse=True)
def crds(cluster: Any) -> None:
    install_crds(cluster)


def spec(plan: str, *domains: str) -> dict[str, Any]:
    doms = list(domains) or ["example.org"]
    return {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": doms,
        "mailboxes": [{"address": f"alice@{doms[0]}"}],
    }


INVALID = [
    ("bad domain", {"domains": ["Not_A_Domain"]}, "must be a lowercase domain name"),
    (
        "bad address",
        {"mailboxes": [{"address": "al ice@example.org"}]},
        "must be a mailbox address",
    ),
    (
        "percent hack address",
        {"mailboxes": [{"address": "a%b@example.org"}]},
        "must be a mailbox address",
    ),
    (
        "mailbox outside domains",
        {"mailboxes": [{"address": "alice@elsewhere.org"}]},
        "every mailbox address must belong to one of spec.domains",
    ),
    (
        "duplicate mailbox",
        {"mailboxes": [{"address": "a@example.org"}, {"address": "a@example.org"}]},
        "Duplicate value",
    ),
    (
        "quota too big",
        {"mailboxes": [{"address": "a@example.org", "quota": "64Ti"}]},
        "quota must be between 1Mi and 16Ti",
    ),
    (
        "quota too small",
        {"mailboxes": [{"address": "a@example.org", "quota": "10Ki"}]},
        "quota must be between 1Mi and 16Ti",
    ),
    ("no domains", {"domains": []}, "should have at least 1 items"),
    ("bad plan name", {"plan": "Gold Plan"}, "must be the name of a MailPlan"),
    ("unknown field", {"colour": "blue"}, 'unknown field "spec.colour"'),
    (
        "bad alias",
        {"mailboxes": [{"address": "a@example.org", "aliases": ["x y"]}]},
        "spec.mailboxes[0].aliases[0]",
    ),
    (
        "forward outside domains",
        {"forwards": [{"from": "shop@elsewhere.org", "to": ["a@example.net"]}]},
        "every forward's 'from' address must belong to one of spec.domains",
    ),
    (
        "bad owner email",
        {"owner": {"email": "owner at example.net"}},
        'spec.owner.email: Invalid value: "string": must be a lowercase mail address',
    ),
    (
        "bad forward target",
        {"forwards": [{"from": "shop@example.org", "to": ["not an address"]}]},
        'spec.forwards[0].to[0]: Invalid value: "not an address"',
    ),
    (
        "mail host outside domains",
        {"mailHost": "mail.elsewhere.org"},
        'spec.mailHost: Invalid value: "object": mailHost must be one of spec.domains or a '
        "name under one",
    ),
    (
        "mail host only ending like a domain",
        {"mailHost": "mailexample.org"},
        "mailHost must be one of spec.domains or a name under one",
    ),
]


@pytest.mark.parametrize(("case", "change", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_server_spec_refused(
    api: Kube, namespace: str, case: str, change: dict[str, Any], message: str
) -> None:
    body = server_body("bad", namespace, {**spec("basic", "example.org"), **change})
    with pytest.raises(ApiError) as info:
        api.create(body)
    assert message in str(info.value), f"{case}: {info.value}"
    assert get_server(api, namespace, "bad") is None


INVALID_PLANS = [
    ("unknown plan field", {"maxMailboxs": 3}, 'unknown field "spec.maxMailboxs"'),
    (
        "limits below requests",
        {"resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "32Mi"}}},
        "limits.memory must be at least",
    ),
    (
        "cpu limit below request",
        {"resources": {"requests": {"cpu": "200m"}, "limits": {"cpu": "100m"}}},
        "resources.limits.cpu must be at least resources.requests.cpu",
    ),
    ("zero mailboxes", {"maxMailboxes": 0}, "should be greater than or equal to 1"),
    ("bad storage", {"storage": "lots"}, "spec.storage"),
    ("bad price id", {"stripePriceId": "prod_123"}, "spec.stripePriceId"),
]


@pytest.mark.parametrize(
    ("case", "change", "message"), INVALID_PLANS, ids=[c[0] for c in INVALID_PLANS]
)
def test_invalid_plan_refused(api: Kube, case: str, change: dict[str, Any], message: str) -> None:
    body = plan_body("bad-plan", **change)
    with pytest.raises(ApiError) as info:
        api.create(body)
    assert message in str(info.value), f"{case}: {info.value}"
    assert api.get(API_VERSION, "MailPlan", None, "bad-plan") is None


def request_body(kind: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": "req", "namespace": namespace},
        "spec": spec,
    }


# Backups and restores are requests: made once, never changed (CNPG's way).
INVALID_CHANGES = [
    ("backup of another server", "MailBackup", {"server": "acme"}, {"server": "other"}),
    ("backup trigger", "MailBackup", {"server": "acme"}, {"server": "acme", "trigger": "Final"}),
    (
        "restore from another backup",
        "MailRestore",
        {"backup": "acme-1", "target": "acme"},
        {"backup": "acme-2", "target": "acme"},
    ),
    (
        "restore overwrite",
        "MailRestore",
        {"backup": "acme-1", "target": "acme"},
        {"backup": "acme-1", "target": "acme", "overwrite": True},
    ),
]


@pytest.mark.parametrize(
    ("case", "kind", "spec", "changed"), INVALID_CHANGES, ids=[c[0] for c in INVALID_CHANGES]
)
def test_requests_are_immutable(
    api: Kube,
    namespace: str,
    case: str,
    kind: str,
    spec: dict[str, Any],
    changed: dict[str, Any],
) -> None:
    api.create(request_body(kind, namespace, spec))
    with pytest.raises(ApiError) as info:
        api.apply(request_body(kind, namespace, changed))
    assert info.value.status == 422
    assert "spec: Invalid value" in info.value.message
    assert "cannot be changed; create a new one" in info.value.message, case
    kept = api.get(API_VERSION, kind, namespace, "req") or {}
    assert kept["spec"].items() >= spec.items(), "the request is unchanged"


INVALID_REQUESTS = [
    (
        "backup unknown field",
        "MailBackup",
        {"server": "acme", "when": "now"},
        'unknown field "spec.when"',
    ),
    (
        "backup bad server name",
        "MailBackup",
        {"server": "Acme Server"},
        "spec.server: Invalid value",
    ),
    (
        "backup bad trigger",
        "MailBackup",
        {"server": "acme", "trigger": "Weekly"},
        'Unsupported value: "Weekly"',
    ),
    (
        "restore unknown field",
        "MailRestore",
        {"backup": "acme-1", "target": "acme", "into": "x"},
        'unknown field "spec.into"',
    ),
]


@pytest.mark.parametrize(
    ("case", "kind", "spec", "message"), INVALID_REQUESTS, ids=[c[0] for c in INVALID_REQUESTS]
)
def test_invalid_request_refused(
    api: Kube, namespace: str, case: str, kind: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ApiError) as info:
        api.create(request_body(kind, namespace, spec))
    assert message in info.value.message, f"{case}: {info.value.message}"
    assert api.get(API_VERSION, kind, namespace, "req") is None


def test_mail_host_under_a_domain_is_accepted(api: Kube, namespace: str) -> None:
    body = server_body(
        "mh", namespace, {**spec("basic", "example.org"), "mailHost": "mail.example.org"}
    )
    api.create(body)
    assert (get_server(api, namespace, "mh") or {}).get("spec", {}).get(
        "mailHost"
    ) == "mail.example.org"
