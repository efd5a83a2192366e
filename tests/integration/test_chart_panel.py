"""The chart's customer panel, its RBAC: its own role, the customer role the operator
binds per namespace, the impersonation role, and the operator's access to make those
bindings. Rendered with `helm template` (no cluster); test_chart_panel_pod.py has the
panel's Deployment, Service, session Secret and NetworkPolicy, and
test_chart_panel_policy.py runs the RBAC and the operator's admission policy against
the real API server."""

from __future__ import annotations

import pytest

from .helm_template import NAMESPACE, one, render

pytestmark = pytest.mark.integration

# What the panel needs in a customer's namespace, as that namespace's vpes-customer.
CUSTOMER_RULES = [
    {
        "apiGroups": ["vpes.io"],
        "resources": ["personalmailservers"],
        "verbs": ["get", "update", "patch"],
    },
    {
        "apiGroups": ["vpes.io"],
        "resources": ["mailbackups", "mailrestores"],
        "verbs": ["get", "list", "create"],
    },
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get"],
        "resourceNames": ["vpes-logins"],
    },
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "patch"],
        "resourceNames": ["vpes-panel"],
    },
]
IMPERSONATE_RULES = [
    {
        "apiGroups": [""],
        "resources": ["serviceaccounts"],
        "verbs": ["impersonate"],
        "resourceNames": ["vpes-customer"],
    }
]
PANEL_RULES = [
    {
        "apiGroups": ["vpes.io"],
        "resources": ["personalmailservers"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": ["vpes.io"], "resources": ["mailplans"], "verbs": ["get", "list"]},
]
OPERATOR_PANEL_ENV = {
    "VPES_PANEL_SERVICE_ACCOUNT": "vpes-panel",
    "VPES_PANEL_NAMESPACE": NAMESPACE,
    "VPES_CUSTOMER_CLUSTER_ROLE": "vpes-customer",
    "VPES_PANEL_IMPERSONATE_CLUSTER_ROLE": "vpes-panel-impersonate",
}


# -- RBAC ------------------------------------------------------------------------


def test_the_customer_role_is_exactly_its_namespace_objects_and_two_secrets(helm: str) -> None:
    role = one(render(helm, "templates/panel-rbac.yaml"), "ClusterRole", "vpes-customer")
    assert role["rules"] == CUSTOMER_RULES
    for rule in role["rules"]:
        if "secrets" in rule["resources"]:
            # Never listed, never watched, never one the rule does not name.
            assert rule.get("resourceNames"), rule
            assert not {"list", "watch", "create", "delete"} & set(rule["verbs"]), rule
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule


def test_the_panel_may_impersonate_only_vpes_customer(helm: str) -> None:
    docs = render(helm, "templates/panel-rbac.yaml")
    role = one(docs, "ClusterRole", "vpes-panel-impersonate")
    assert role["rules"] == IMPERSONATE_RULES


def test_the_panels_own_role_reads_servers_and_plans_only(helm: str) -> None:
    docs = render(helm, "templates/panel-rbac.yaml")
    role = one(docs, "ClusterRole", "vpes-panel")
    assert role["rules"] == PANEL_RULES
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in role["rules"])
    assert not any("secrets" in r["resources"] for r in role["rules"])
    sa = one(docs, "ServiceAccount", "vpes-panel")
    assert sa["metadata"]["namespace"] == NAMESPACE
    binding = one(docs, "ClusterRoleBinding", "vpes-panel")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "vpes-panel",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "vpes-panel", "namespace": NAMESPACE}
    ]
    # Exactly these objects: the two per-namespace roles are the operator's to bind.
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
        ("ClusterRole", "vpes-customer"),
        ("ClusterRole", "vpes-panel"),
        ("ClusterRole", "vpes-panel-impersonate"),
        ("ClusterRoleBinding", "vpes-panel"),
        ("ServiceAccount", "vpes-panel"),
    ]


def test_the_chart_binds_neither_customer_nor_impersonate_role(helm: str) -> None:
    bound = [
        (d["kind"], d["metadata"]["name"])
        for d in render(helm)
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and d["roleRef"]["name"] in ("vpes-customer", "vpes-panel-impersonate")
    ]
    assert bound == []


def test_the_operator_may_bind_those_two_roles_only(helm: str) -> None:
    docs = render(helm, "templates/operator-rbac.yaml")
    rules = one(docs, "ClusterRole", "vpes-operator")["rules"]
    bind = [r for r in rules if "bind" in r["verbs"] or "escalate" in r["verbs"]]
    assert bind == [
        {
            "apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"],
            "verbs": ["bind"],
            "resourceNames": ["vpes-customer", "vpes-panel-impersonate"],
        }
    ]
    by_resource = {tuple(r["resources"]): r["verbs"] for r in rules}
    assert by_resource[("serviceaccounts",)] == ["get", "create", "patch"]
    assert by_resource[("rolebindings",)] == ["get", "create", "patch"]
    policy = one(docs, "ValidatingAdmissionPolicy", "vpes-operator-bindings")
    [match] = policy["spec"]["matchConditions"]
    assert match["expression"].endswith('"system:serviceaccount:vpes-system:vpes-operator"')
    binding = one(docs, "ValidatingAdmissionPolicyBinding", "vpes-operator-bindings")
    assert binding["spec"] == {
        "policyName": "vpes-operator-bindings",
        "validationActions": ["Deny"],
    }
    # The operator's namespace scope covers them too (no binding in kube-system).
    scope = one(docs, "ValidatingAdmissionPolicy", "vpes-operator-scope")
    covered = {
        res
        for rule in scope["spec"]["matchConstraints"]["resourceRules"]
        for res in rule["resources"]
    }
    assert {"serviceaccounts", "rolebindings"} <= covered
    # Panel off: no per-namespace access, so no such permission.
    off = render(helm, "templates/operator-rbac.yaml", "panel.enabled=false")
    rules = one(off, "ClusterRole", "vpes-operator")["rules"]
    assert not [
        r
        for r in rules
        if {"serviceaccounts", "rolebindings", "clusterroles"} & set(r["resources"])
    ]
    assert render(helm, "templates/panel-rbac.yaml", "panel.enabled=false") == []


def test_a_renamed_panel_service_account_is_the_one_bound_and_admitted(helm: str) -> None:
    name = "customer-panel"
    docs = render(helm, None, f"panel.serviceAccount.name={name}")
    assert one(docs, "ServiceAccount", name)["metadata"]["namespace"] == NAMESPACE
    assert one(docs, "ClusterRoleBinding", "vpes-panel")["subjects"][0]["name"] == name
    policy = one(docs, "ValidatingAdmissionPolicy", "vpes-operator-bindings")
    panel = next(v for v in policy["spec"]["variables"] if v["name"] == "panelBinding")
    assert f'["{NAMESPACE}", "{name}"]' in panel["expression"]
    dep = one(docs, "Deployment", "vpes-panel")
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == name
    config = one(docs, "ConfigMap", "vpes-operator")["data"]
    assert config["VPES_PANEL_SERVICE_ACCOUNT"] == name


# -- the operator's settings -------------------------------------------------------


def test_the_operator_is_told_the_panels_names_when_it_is_on(helm: str) -> None:
    (config,) = render(helm, "templates/operator-config.yaml")
    env = config["data"]
    assert {k: env[k] for k in OPERATOR_PANEL_ENV} == OPERATOR_PANEL_ENV
    assert env["VPES_PANEL_URL"] == "https://panel.example.net"
    (config,) = render(helm, "templates/operator-config.yaml", "panel.enabled=false")
    assert not set(OPERATOR_PANEL_ENV) & set(config["data"])
    # The address the operator tells customers follows panel.publicUrl.
    (config,) = render(
        helm, "templates/operator-config.yaml", "panel.publicUrl=https://my.example.org"
    )
    assert config["data"]["VPES_PANEL_URL"] == "https://my.example.org"


def test_the_names_match_the_panel_tests_and_the_panel_code() -> None:
    """The panel's integration tests run the operator with these names (and the chart's
    RBAC rendered for release vpes); the panel's code uses the same Secret and SA names."""
    from vpes_panel import settings

    from . import panel_support

    assert panel_support.OPERATOR_PANEL_ENV == OPERATOR_PANEL_ENV
    assert panel_support.PANEL_RBAC == "templates/panel-rbac.yaml"
    assert settings.CUSTOMER_SA == "vpes-customer"
    named = [r["resourceNames"][0] for r in CUSTOMER_RULES if "resourceNames" in r]
    assert named == [settings.LOGINS_SECRET, settings.PANEL_SECRET]
