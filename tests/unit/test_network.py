"""A tenant's NetworkPolicy: which of the edge's pods reach which of its ports, and
where the tenant may connect. The selectors are evaluated here the way the API
server's NetworkPolicy semantics do (matchLabels and matchExpressions, ANDed)."""

from __future__ import annotations

from typing import Any

import pytest
from vpes_operator.builders.meta import Owner
from vpes_operator.builders.network import EDGE_ROLE_LABEL, network_policy
from vpes_operator.render.layout import PORTS, USAGE_PORT_NAME

from .render_support import SETTINGS

pytestmark = pytest.mark.unit

OWNER = Owner(name="alice", namespace="customer-1", uid="0f3c2b1a", plan="personal")
NS = {"kubernetes.io/metadata.name": SETTINGS.operator_namespace}


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not dict(selector.get("matchLabels", {})).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        value, present = labels.get(e["key"]), e["key"] in labels
        ok = {
            "In": present and value in e["values"],
            "NotIn": not present or value not in e["values"],
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
        if not ok:
            return False
    return True


def _admitted(rules: list[dict[str, Any]], labels: dict[str, str], ports_key: str) -> set[str]:
    """The ports (by name) of the rules whose peers select a pod with `labels` in the
    operator's namespace."""
    out: set[str] = set()
    for rule in rules:
        for peer in rule.get(ports_key, []):
            if "podSelector" not in peer or "namespaceSelector" not in peer:
                continue
            if _matches(peer["namespaceSelector"], NS) and _matches(peer["podSelector"], labels):
                out |= {str(p.get("port")) for p in rule.get("ports", [{"port": "any"}])}
    return out


def _pod(role: str | None) -> dict[str, str]:
    labels = dict(SETTINGS.edge_pod_labels)
    if role is not None:
        labels[EDGE_ROLE_LABEL] = role
    return labels


@pytest.mark.parametrize("dedicated", [False, True])
def test_only_the_mx_and_the_proxy_reach_the_mail_ports(dedicated: bool) -> None:
    spec = network_policy(OWNER, SETTINGS, dedicated_address=dedicated)["spec"]
    mail = {p.name for p in PORTS}
    assert _admitted(spec["ingress"], _pod("mx"), "from") == mail
    assert _admitted(spec["ingress"], _pod("proxy"), "from") == mail
    # The relay forwards no client's address: a compromised relay must not be able to
    # forge one (PROXY headers, XCLIENT) at a tenant.
    assert _admitted(spec["ingress"], _pod("relay"), "from") == set()
    assert _admitted(spec["ingress"], _pod(None), "from") == set()
    assert USAGE_PORT_NAME not in _admitted(spec["ingress"], _pod("mx"), "from")


def test_the_tenant_reaches_the_relay_and_no_other_edge_pod() -> None:
    spec = network_policy(OWNER, SETTINGS, dedicated_address=False)["spec"]
    assert _admitted(spec["egress"], _pod("relay"), "to") == {"any"}
    for role in ("mx", "proxy", None):
        assert _admitted(spec["egress"], _pod(role), "to") == set(), role


def test_the_operator_reaches_the_usage_report_and_the_health_gate_s_two_ports() -> None:
    """A fleet upgrade's gate reads the SMTP banner and the IMAP greeting on the plain
    ports; no PROXY port (a PROXY header there would be trusted) and nothing else."""
    spec = network_policy(OWNER, SETTINGS, dedicated_address=True)["spec"]
    operator = dict(SETTINGS.operator_pod_labels)
    assert _admitted(spec["ingress"], operator, "from") == {USAGE_PORT_NAME, "smtp", "imap"}
