"""The chart's part of antispam FleetUpgrades, rendered with `helm template`: the
antispam pods mount the operator's rules ConfigMap (optional), which the chart never
renders (so `helm upgrade` keeps the operator's content); the scanner is exposed to the
operator only; the operator's Role names the canary and the antispam Deployment; the
operator knows the Deployment's name. test_fleet_antispam.py runs the same RBAC and
policy on the real API server."""

from __future__ import annotations

from typing import Any

import pytest
from vpes_operator.fleet.antispam import RULES_VOLUME
from vpes_operator.fleet.antispam_controller import SCANNER_PORT, Names
from vpes_operator.settings import OperatorSettings

from .helm_template import NAMESPACE, one, render

pytestmark = pytest.mark.integration


def test_the_antispam_pods_mount_the_rules_the_chart_never_renders(helm: str) -> None:
    docs = render(helm, None)
    deployment = one(docs, "Deployment", "vpes-antispam")
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == RULES_VOLUME)
    assert volume["configMap"] == {"name": "vpes-antispam-rules", "optional": True}
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts[RULES_VOLUME]["mountPath"] == "/etc/vpes/antispam-rules"
    assert mounts[RULES_VOLUME]["readOnly"] is True
    assert not [d for d in docs if d["metadata"]["name"] == "vpes-antispam-rules"]
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    assert "vpes.io/antispam-rules" not in annotations  # the operator's, kept by Helm


def test_the_operator_knows_the_antispam_deployment(helm: str) -> None:
    config = one(render(helm, None), "ConfigMap", "vpes-operator")["data"]
    settings = OperatorSettings.from_env(config)
    names = Names.of(settings)
    assert (names.deployment, names.namespace) == ("vpes-antispam", NAMESPACE)
    assert (names.live_rules, names.canary, names.canary_rules) == (
        "vpes-antispam-rules",
        "vpes-antispam-canary",
        "vpes-antispam-rules-canary",
    )
    off = one(render(helm, None, "edge.antispam.enabled=false", "edge.relay.enabled=false"),
              "ConfigMap", "vpes-operator")["data"]  # fmt: skip
    assert "VPES_ANTISPAM_DEPLOYMENT" not in off


def test_only_the_operator_reaches_the_scanner(helm: str) -> None:
    docs = render(helm, None)
    service = one(docs, "Service", "vpes-antispam")
    assert {"name": "scanner", "port": SCANNER_PORT, "targetPort": "scanner"} in service["spec"][
        "ports"
    ]
    policy = one(docs, "NetworkPolicy", "vpes-antispam")
    rules: list[dict[str, Any]] = policy["spec"]["ingress"]
    scanner = [r for r in rules if {"protocol": "TCP", "port": SCANNER_PORT} in r.get("ports", [])]
    assert len(scanner) == 1
    assert scanner[0]["from"] == [
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/part-of": "vpes",
                    "app.kubernetes.io/instance": "vpes",
                    "vpes.io/component": "operator",
                }
            }
        }
    ]


def test_the_operator_s_antispam_role_names_its_objects(helm: str) -> None:
    docs = render(helm, "templates/operator-rbac.yaml")
    role = one(docs, "Role", "vpes-operator-antispam")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]},
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["vpes-antispam", "vpes-antispam-canary"],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": ["vpes-antispam-canary"],
            "verbs": ["delete"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["vpes-antispam-rules-canary"],
            "verbs": ["delete"],
        },
    ]
    cluster = one(docs, "ClusterRole", "vpes-operator")
    assert not any("deployments" in r["resources"] for r in cluster["rules"])
    policy = one(docs, "ValidatingAdmissionPolicy", "vpes-operator-scope")
    own = policy["spec"]["validations"][1]["expression"]
    assert '"vpes-antispam-rules", "vpes-antispam-rules-canary"' in own
    without = render(
        helm,
        "templates/operator-rbac.yaml",
        "edge.antispam.enabled=false",
        "edge.relay.enabled=false",
    )
    assert not [d for d in without if d["metadata"]["name"] == "vpes-operator-antispam"]
