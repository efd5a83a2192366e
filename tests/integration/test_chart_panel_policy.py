"""The panel's access model as the chart makes it, against the real API server: the
operator (its ServiceAccount, the chart's RBAC and admission policy) may make only the
two RoleBindings the panel needs in a customer namespace, to exactly their subjects,
and only the ServiceAccount vpes-customer; with those, the panel's ServiceAccount can
act as that namespace's vpes-customer, which reaches its two Secrets by name and
nothing else, and as nobody else."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from vpes_devcluster.kubeconfig import api_client
from vpes_devcluster.platform import OPERATOR_NAMESPACE, install_platform, install_rbac
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError, Kube

from .chart_support import CHART, helm
from .operator_support import wait_for

pytestmark = pytest.mark.integration
RBAC_API = "rbac.authorization.k8s.io/v1"
PANEL_SA = "vpes-panel"
ONLY_TWO = "the vpes operator may write only two RoleBindings"


@pytest.fixture(scope="module")
def as_operator(cluster: Any) -> Kube:
    return Kube(api_client(install_platform(cluster)), field_manager="vpes-operator")


@pytest.fixture(scope="module")
def as_panel(cluster: Any, as_operator: Kube) -> Kube:
    kubeconfig = install_rbac(
        cluster, OPERATOR_NAMESPACE, "templates/panel-rbac.yaml", PANEL_SA, "panel"
    )
    return Kube(api_client(kubeconfig), field_manager="vpes-panel")


def binding(
    namespace: str, name: str, role: str, subject: dict[str, str] | list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "apiVersion": RBAC_API,
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subject if isinstance(subject, list) else [subject],
    }


def sa(name: str, namespace: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def customer_binding(namespace: str, subject: dict[str, str] | None = None) -> dict[str, Any]:
    return binding(
        namespace, "vpes-customer", "vpes-customer", subject or sa("vpes-customer", namespace)
    )


def panel_binding(namespace: str, subject: dict[str, str] | None = None) -> dict[str, Any]:
    return binding(
        namespace,
        "vpes-panel",
        "vpes-panel-impersonate",
        subject or sa(PANEL_SA, OPERATOR_NAMESPACE),
    )


def refused(call: Callable[[], Any]) -> ApiError:
    with pytest.raises(ApiError) as e:
        call()
    assert e.value.status == 403, e.value
    return e.value


def policy_refuses(as_operator: Kube, obj: dict[str, Any]) -> ApiError:
    """The policy takes a moment to be loaded after it is applied: wait for its refusal
    (a dry run: nothing is stored if it is not loaded yet)."""

    def attempt() -> list[ApiError] | None:
        try:
            as_operator.create(obj, dry_run=True)
        except ApiError as e:
            return [e] if e.status == 403 and ONLY_TWO in e.message else None
        return None

    return wait_for(attempt, "the operator's binding policy to refuse", timeout=30)[0]


def test_the_operator_binds_the_customer_role_to_nobody_else(
    as_operator: Kube, namespace: str
) -> None:
    # Another namespace's vpes-customer: it would reach this customer's Secrets.
    error = policy_refuses(as_operator, customer_binding(namespace, sa("vpes-customer", "other")))
    assert "vpes-customer of its own namespace" in error.message
    assert "refused: RoleBinding vpes-customer (ClusterRole vpes-customer)" in error.message
    for subject in (
        {"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"},
        {"kind": "Group", "name": "system:authenticated", "apiGroup": "rbac.authorization.k8s.io"},
        sa("vpes-operator", OPERATOR_NAMESPACE),  # itself
        sa("default", namespace),
    ):
        error = refused(
            lambda subject=subject: as_operator.create(
                customer_binding(namespace, subject), dry_run=True
            )
        )
        assert ONLY_TWO in error.message, subject
    # Two subjects, one of them right.
    two = binding(
        namespace,
        "vpes-customer",
        "vpes-customer",
        [sa("vpes-customer", namespace), sa("vpes-customer", "other")],
    )
    assert ONLY_TWO in refused(lambda: as_operator.create(two, dry_run=True)).message
    # The right role under another name, the impersonation role to the customer.
    renamed = customer_binding(namespace)
    renamed["metadata"]["name"] = "extra"
    assert ONLY_TWO in refused(lambda: as_operator.create(renamed, dry_run=True)).message
    swapped = binding(
        namespace, "vpes-customer", "vpes-panel-impersonate", sa("vpes-customer", namespace)
    )
    assert ONLY_TWO in refused(lambda: as_operator.create(swapped, dry_run=True)).message
    # Another role altogether: RBAC's own escalation check (no `bind` on it).
    admin = binding(namespace, "vpes-customer", "admin", sa("vpes-customer", namespace))
    refused(lambda: as_operator.create(admin, dry_run=True))
    # The one it is for.
    as_operator.create(customer_binding(namespace))


def test_the_panel_impersonates_only_through_its_own_service_account(
    as_operator: Kube, namespace: str
) -> None:
    policy_refuses(as_operator, customer_binding(namespace, sa("vpes-customer", "other")))
    for subject in (sa("vpes-operator", OPERATOR_NAMESPACE), sa(PANEL_SA, namespace)):
        error = refused(
            lambda subject=subject: as_operator.create(
                panel_binding(namespace, subject), dry_run=True
            )
        )
        assert f"panel's ServiceAccount {OPERATOR_NAMESPACE}/{PANEL_SA}" in error.message
    as_operator.create(panel_binding(namespace))


def test_only_the_service_account_vpes_customer_and_never_in_its_own_namespace(
    as_operator: Kube, namespace: str
) -> None:
    policy_refuses(as_operator, customer_binding(namespace, sa("vpes-customer", "other")))
    other = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "helper", "namespace": namespace},
    }
    error = refused(lambda: as_operator.create(other, dry_run=True))
    assert "makes only the ServiceAccount vpes-customer" in error.message
    mine = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "vpes-customer", "namespace": namespace},
    }
    as_operator.create(mine)
    # The operator's namespace scope: no binding where the platform lives.
    for ns in (OPERATOR_NAMESPACE, "kube-system"):
        refused(lambda ns=ns: as_operator.create(customer_binding(ns), dry_run=True))


def test_the_panel_acts_as_each_customer_within_their_two_secrets(
    api: Kube, as_operator: Kube, as_panel: Kube, namespace: str
) -> None:
    """With the objects the operator makes, the panel reaches this namespace's server,
    backups and its two Secrets as its vpes-customer, and nothing more, as nobody else."""
    policy_refuses(as_operator, customer_binding(namespace, sa("vpes-customer", "other")))
    as_operator.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "vpes-customer", "namespace": namespace},
        }
    )
    as_operator.create(customer_binding(namespace))
    as_operator.create(panel_binding(namespace))
    for name in ("vpes-panel", "vpes-logins", "creds"):
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace},
                "data": {"k": base64.b64encode(b"v").decode()},
            }
        )
    customer = as_panel.impersonate(f"system:serviceaccount:{namespace}:vpes-customer")
    found = wait_for(
        lambda: customer.get("v1", "Secret", namespace, "vpes-panel"),
        "the panel reading vpes-panel as the customer",
        30,
    )
    assert found["data"]["k"]
    assert customer.get("v1", "Secret", namespace, "vpes-logins") is not None
    customer.request(
        "PATCH",
        customer.resource("v1", "Secret").path(namespace, "vpes-panel"),
        body={"data": {"totp": base64.b64encode(b"x").decode()}},
        content_type="application/merge-patch+json",
    )
    refused(lambda: customer.get("v1", "Secret", namespace, "creds"))  # the credentials
    refused(lambda: customer.list("v1", "Secret", namespace))
    refused(
        lambda: customer.request(
            "PATCH",
            customer.resource("v1", "Secret").path(namespace, "vpes-logins"),
            body={"data": {"k": ""}},
            content_type="application/merge-patch+json",
        )
    )
    assert customer.list(API_VERSION, "MailBackup", namespace) == []
    refused(lambda: customer.list(API_VERSION, "PersonalMailServer", namespace))
    # Not another namespace's customer (no binding there), nor another identity here.
    other = f"t-{uuid.uuid4().hex[:10]}"
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        elsewhere = as_panel.impersonate(f"system:serviceaccount:{other}:vpes-customer")
        refused(lambda: elsewhere.list(API_VERSION, "MailBackup", other))
    finally:
        api.delete("v1", "Namespace", None, other)
    for user in (f"system:serviceaccount:{namespace}:default", "system:admin"):
        refused(
            lambda user=user: as_panel.impersonate(user).get("v1", "Secret", namespace, "creds")
        )
    # The panel itself reads no Secret at all.
    refused(lambda: as_panel.get("v1", "Secret", namespace, "vpes-panel"))
    assert isinstance(as_panel.list(API_VERSION, "MailPlan"), list)


def test_installed_the_network_policy_lets_the_panel_reach_this_api_server(
    cluster: Any, api: Kube
) -> None:
    """Installed (lookups work), the panel's egress names this cluster's API server:
    its EndpointSlice's addresses and port, and the kubernetes Service's address. (The
    dev cluster's API server keeps no endpoints of itself: one is made here as a real
    cluster's would be, and removed after.)"""
    made = api.get("discovery.k8s.io/v1", "EndpointSlice", "default", "kubernetes") is None
    if made:
        api.create(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "kubernetes",
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "kubernetes"},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["192.0.2.5"]}, {"addresses": ["192.0.2.6"]}],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            }
        )
    try:
        out = helm(
            cluster,
            "template", "vpes", str(CHART), "-n", OPERATOR_NAMESPACE, "--dry-run=server",
            "--show-only", "templates/networkpolicies.yaml", "--set", "billing.enabled=false",
        ).stdout  # fmt: skip
        slice_ = api.get("discovery.k8s.io/v1", "EndpointSlice", "default", "kubernetes")
    finally:
        if made:
            api.delete("discovery.k8s.io/v1", "EndpointSlice", "default", "kubernetes")
    [policy] = [d for d in yaml.safe_load_all(out) if d and d["metadata"]["name"] == "vpes-panel"]
    _dns, to_api = policy["spec"]["egress"]
    service = api.get("v1", "Service", "default", "kubernetes")
    assert slice_ is not None and service is not None
    addresses = [a for e in slice_["endpoints"] for a in e["addresses"]]
    addresses.append(service["spec"]["clusterIP"])
    assert to_api["to"] == [{"ipBlock": {"cidr": f"{a}/32"}} for a in addresses]
    ports = {p["port"] for p in slice_["ports"]} | {p["port"] for p in service["spec"]["ports"]}
    assert sorted(p["port"] for p in to_api["ports"]) == sorted(ports)
