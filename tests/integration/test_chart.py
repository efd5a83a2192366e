"""The Helm chart against the real control plane: lint, dry run, install, upgrade, uninstall.

The kwok nodes run no containers, so the chart's operator pods only look
Running; the operator that reconciles here runs beside the cluster with the
chart's own ServiceAccount token and the chart's own configuration (the
Deployment's environment), which is what the pod would run with.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from .operator_support import (
    REPO,
    OperatorProcess,
    harvest_secrets,
    server_body,
    wait_for,
    wait_ready,
)

CHART = REPO / "charts" / "vpes"
RELEASE = "chart"
NAMESPACE = "vpes-chart"


def helm(cluster: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [str(Path(cluster.bin_dir) / "helm"), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HELM_CACHE_HOME": str(Path(cluster.kubeconfig).parent / "helm")},
    )
    if check and out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}: {out.stderr}")
    return out


@pytest.fixture(scope="module")
def api(cluster: Any) -> Kube:
    return Kube(cluster.api_client(), field_manager="tests")


def test_lint_and_values_schema(cluster: Any) -> None:
    assert "0 chart(s) failed" in helm(cluster, "lint", str(CHART)).stdout
    bad = helm(cluster, "template", "x", str(CHART), "--set", "operator.replicas=0", check=False)
    assert bad.returncode != 0
    assert "/operator/replicas" in bad.stderr and "minimum" in bad.stderr
    bad = helm(
        cluster, "template", "x", str(CHART), "--set", "edge.networks[0]=everyone", check=False
    )
    assert bad.returncode != 0 and "/edge/networks/0" in bad.stderr
    bad = helm(cluster, "template", "x", str(CHART), "--set", "tenant.colour=blue", check=False)
    assert bad.returncode != 0 and "colour" in bad.stderr


def test_template_passes_a_server_side_dry_run(cluster: Any) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    cluster.kubectl("create", "namespace", "vpes-dry", check=False)
    rendered = helm(
        cluster,
        "template",
        "dry",
        str(CHART),
        "-n",
        "vpes-dry",
        "--set",
        "monitoring.serviceMonitor.enabled=false",
    ).stdout
    out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    assert "deployment.apps/dry-operator created (server dry run)" in out.stdout


def test_install_reconcile_upgrade_uninstall(cluster: Any, api: Kube, tmp_path: Path) -> None:
    plan = f"chart-{uuid.uuid4().hex[:6]}"
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "plans": [{"name": plan, "spec": {"storage": "1Gi", "maxMailboxes": 3}}],
                "tenant": {"image": "localhost/vpes-tenant:test", "bcryptRounds": 4},
            }
        )
    )
    out = helm(
        cluster,
        "install",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "--create-namespace",
        "-f",
        str(values),
        "--wait",
        "--timeout",
        "120s",
    )
    assert "CRDs and every customer's data stay" in out.stdout  # NOTES.txt
    dep = api.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}-operator")
    assert dep["status"].get("readyReplicas") == 2
    assert api.get(API_VERSION, "MailPlan", None, plan) is not None

    # The operator as the chart configures it: its ServiceAccount, its settings.
    config = api.get("v1", "ConfigMap", NAMESPACE, f"{RELEASE}-operator")
    assert config is not None
    token = cluster.token_for(NAMESPACE, "vpes-operator", 3600)
    kubeconfig = cluster.write_kubeconfig_for_token(token, tmp_path / "sa.kubeconfig")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    args = [a for a in container["args"] if not a.startswith(("--liveness", "--metrics-port"))]
    op = OperatorProcess(
        kubeconfig,
        tmp_path / "op",
        extra_env={**config["data"], "POD_NAMESPACE": NAMESPACE, "POD_NAME": "chart-op-0"},
        args=[*args, "--metrics-port", "0"],
    )
    ns = f"c-{uuid.uuid4().hex[:6]}"
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    op.start()
    try:
        api.apply(
            server_body(
                "viachart",
                ns,
                {
                    "plan": plan,
                    "owner": {"email": "o@example.net"},
                    "domains": ["chart.test"],
                    "mailboxes": [{"address": "a@chart.test"}],
                },
            )
        )
        wait_ready(api, ns, "viachart")
        sts = api.get("apps/v1", "StatefulSet", ns, "viachart") or {}
        assert (
            sts["spec"]["template"]["spec"]["containers"][0]["image"]
            == "localhost/vpes-tenant:test"
        )
    finally:
        op.stop()
    assert "leading as chart-op-0" in op.log_text()

    helm(
        cluster,
        "upgrade",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "-f",
        str(values),
        "--set",
        "operator.replicas=3",
        "--wait",
        "--timeout",
        "120s",
    )
    dep = api.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}-operator")
    assert dep["spec"]["replicas"] == 3

    helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s")

    def gone() -> bool:
        left = [
            kind
            for kind, path in [
                ("Deployment", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"),
                ("ConfigMap", f"/api/v1/namespaces/{NAMESPACE}/configmaps"),
                ("ServiceAccount", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts"),
                ("Role", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/roles"),
            ]
            for item in api.request(
                "GET", path, query={"labelSelector": f"app.kubernetes.io/instance={RELEASE}"}
            )["items"]
        ]
        roles = api.request(
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            query={"labelSelector": f"app.kubernetes.io/instance={RELEASE}"},
        )
        return not left and not roles["items"]

    wait_for(gone, "every object of the release to be gone")
    # Kept, as users expect: the CRDs and the customers' servers (and plans).
    crd = api.request(
        "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/personalmailservers.vpes.io"
    )
    assert crd["metadata"]["name"] == "personalmailservers.vpes.io"
    assert api.get(API_VERSION, "PersonalMailServer", ns, "viachart") is not None
    assert api.get("v1", "PersistentVolumeClaim", ns, "viachart-mail") is not None
    harvest_secrets(api, ns)
    api.delete("v1", "Namespace", None, ns)


def test_every_chart_setting_is_an_operator_setting(cluster: Any) -> None:
    """The chart's settings ConfigMap names only real settings, with valid values."""
    from vpes_operator.settings import ENV_PREFIX, OperatorSettings

    rendered = helm(
        cluster,
        "template",
        "x",
        str(CHART),
        "--show-only",
        "templates/operator-config.yaml",
        "--set",
        "dns.rfc2136.tsigSecret.name=t",
        "--set",
        "edge.dedicatedServiceAnnotations.a=b",
    ).stdout
    data = yaml.safe_load(rendered)["data"]
    fields = {ENV_PREFIX + name.upper() for name in OperatorSettings.model_fields}
    assert set(data) <= fields, sorted(set(data) - fields)
    settings = OperatorSettings.from_env(data)
    assert settings.mx_host == "mx.example.net"
    assert settings.dns_rfc2136_tsig_secret_file == "/etc/vpes/dns/tsig"
    assert settings.dedicated_service_annotations == {"a": "b"}
