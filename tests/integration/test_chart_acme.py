"""The chart's part of ACME HTTP-01: one ConfigMap name for the operator and vpes-web,
the operator's list of vpes-web's EndpointSlices in its own namespace only, and the
admission policy admitting that ConfigMap (and no other new one) there. Rendered with
`helm template`; test_acme_http01.py runs the same RBAC and policy on the real API
server."""

from __future__ import annotations

import pytest
from vpes_operator.settings import OperatorSettings

from .helm_template import NAMESPACE, one, render

pytestmark = pytest.mark.integration
RBAC = "templates/operator-rbac.yaml"


def test_operator_and_web_are_given_one_configmap_name(helm: str) -> None:
    config = one(render(helm, None), "ConfigMap", "vpes-operator")["data"]
    assert config["VPES_ACME_HTTP01_CONFIGMAP"] == "vpes-acme-http01"
    settings = OperatorSettings.from_env(config)
    assert settings.acme_http01_configmap == "vpes-acme-http01"
    assert settings.web_service_name == "vpes-web"  # whose pods are asked


def test_the_operator_lists_endpointslices_in_its_namespace_only(helm: str) -> None:
    docs = render(helm, RBAC)
    role = one(docs, "Role", "vpes-operator-acme")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}
    ]
    binding = one(docs, "RoleBinding", "vpes-operator-acme")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["name"] == "vpes-operator-acme"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "vpes-operator", "namespace": NAMESPACE}
    ]
    cluster = one(docs, "ClusterRole", "vpes-operator")
    assert not any("discovery.k8s.io" in r["apiGroups"] for r in cluster["rules"])
    without = render(helm, RBAC, "web.enabled=false")
    assert not [d for d in without if d["metadata"]["name"] == "vpes-operator-acme"]


def test_the_operator_scope_policy_admits_the_answers_configmap(helm: str) -> None:
    policy = one(render(helm, RBAC), "ValidatingAdmissionPolicy", "vpes-operator-scope")
    own = policy["spec"]["validations"][1]
    assert '"vpes-edge-maps", "vpes-acme-http01"' in own["expression"]
    assert "the ACME HTTP-01 answers (vpes-acme-http01)" in own["messageExpression"]
