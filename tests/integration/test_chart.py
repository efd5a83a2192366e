"""The Helm chart against the real control plane: lint, dry run, install, upgrade, uninstall.

The kwok nodes run no containers, so the chart's operator pods only look
Running; the operator that reconciles here runs beside the cluster with the
chart's own ServiceAccount token and the chart's own configuration (the
Deployment's environment), which is what the pod would run with.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import yaml
from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import Kube

from .chart_support import CHART, helm, render, values_file
from .operator_support import (
    OperatorProcess,
    harvest_secrets,
    server_body,
    wait_for,
    wait_ready,
)

RELEASE = "chart"
NAMESPACE = "vpes-chart"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}-operator"
# Every kind the chart makes, where to list it: none may be left after uninstall.
RELEASE_OBJECTS = [
    ("Deployment", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"),
    ("ConfigMap", f"/api/v1/namespaces/{NAMESPACE}/configmaps"),
    ("Service", f"/api/v1/namespaces/{NAMESPACE}/services"),
    ("ServiceAccount", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts"),
    ("PodDisruptionBudget", f"/apis/policy/v1/namespaces/{NAMESPACE}/poddisruptionbudgets"),
    ("Role", f"{RBAC}/roles"),  # in every namespace
    ("RoleBinding", f"{RBAC}/rolebindings"),
    ("ClusterRole", f"{RBAC}/clusterroles"),
    ("ClusterRoleBinding", f"{RBAC}/clusterrolebindings"),
    (
        "ValidatingAdmissionPolicy",
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
    ),
    (
        "ValidatingAdmissionPolicyBinding",
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
    ),
]


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
    for setting, path in [
        ("backup.s3.credentialsSecret=vpes-system/s3", "/backup/s3/credentialsSecret"),
        ("backup.s3.endpoint=s3.example.net", "/backup/s3/endpoint"),
        ("backup.s3.prefix=/vpes/", "/backup/s3/prefix"),
        ("backup.retentionAfterDeleteDays=-1", "/backup/retentionAfterDeleteDays"),
        ("backup.s3.egressCIDRs[0]=s3.example.net", "/backup/s3/egressCIDRs/0"),
        ("tenant.nodeSelector.pool=two words", "/tenant/nodeSelector/pool"),
        ("monitoring.serviceMonitor.interval=often", "/monitoring/serviceMonitor/interval"),
    ]:
        bad = helm(cluster, "template", "x", str(CHART), "--set", setting, check=False)
        assert bad.returncode != 0 and path in bad.stderr, (setting, bad.stderr)


def test_a_bad_bucket_fails_at_install(cluster: Any) -> None:
    out = helm(
        cluster,
        "install",
        "badbucket",
        str(CHART),
        "-n",
        "vpes-badbucket",
        "--create-namespace",
        "--set",
        "backup.s3.bucket=My_Backups",
        check=False,
    )
    assert out.returncode != 0
    assert "at '/backup/s3/bucket': 'My_Backups' does not match pattern" in out.stderr, out.stderr
    assert helm(cluster, "status", "badbucket", "-n", "vpes-badbucket", check=False).returncode


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
    values = values_file(
        tmp_path,
        {
            "plans": [{"name": plan, "spec": {"storage": "1Gi", "maxMailboxes": 3}}],
            "tenant": {"image": "localhost/vpes-tenant:test", "bcryptRounds": 4},
            # No load balancer here: helm --wait would wait for their addresses.
            "edge": {
                "mx": {"service": {"type": "ClusterIP"}},
                "proxy": {"service": {"type": "ClusterIP"}},
            },
        },
    )
    dep = install(cluster, api, values, plan)
    ns = reconcile_as_the_chart_runs_the_operator(cluster, api, dep, plan, tmp_path)
    upgrade_to_three_replicas(cluster, api, values)
    uninstall_keeps_crds_plans_and_servers(cluster, api, plan, ns)


def install(cluster: Any, api: Kube, values: Path, plan: str) -> dict[str, Any]:
    """helm install --wait; returns the operator's Deployment."""
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
    assert "CRDs, the plans and every customer's data stay" in out.stdout  # NOTES.txt
    dep = api.request("GET", DEPLOYMENT)
    assert dep["status"].get("readyReplicas") == 2
    assert api.get(API_VERSION, "MailPlan", None, plan) is not None
    return dep


def reconcile_as_the_chart_runs_the_operator(
    cluster: Any, api: Kube, dep: dict[str, Any], plan: str, tmp_path: Path
) -> str:
    """The operator as the chart configures it (its ServiceAccount, its settings, its
    arguments) makes a server Ready; returns the server's namespace."""
    config = api.get("v1", "ConfigMap", NAMESPACE, f"{RELEASE}-operator")
    assert config is not None
    token = cluster.token_for(NAMESPACE, "vpes-operator", 3600)
    kubeconfig = cluster.write_kubeconfig_for_token(token, tmp_path / "sa.kubeconfig")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    args = [a for a in container["args"] if not a.startswith(("--liveness", "--metrics-port"))]
    # The antispam Secret's controller password, where the pod has it mounted: here a
    # file of the test's (the servers train the chart's Rspamd).
    antispam = api.get("v1", "Secret", NAMESPACE, f"{RELEASE}-antispam")
    assert antispam is not None
    password = tmp_path / "controller-password"
    password.write_bytes(base64.b64decode(antispam["data"]["controller-password"]))
    assert config["data"]["VPES_ANTISPAM_CONTROLLER_PASSWORD_FILE"]
    op = OperatorProcess(
        kubeconfig,
        tmp_path / "op",
        extra_env={
            **config["data"],
            "VPES_ANTISPAM_CONTROLLER_PASSWORD_FILE": str(password),
            "POD_NAMESPACE": NAMESPACE,
            "POD_NAME": "chart-op-0",
        },
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
        # It trains the chart's Rspamd: the controller password is in its Secret.
        creds = api.get("v1", "Secret", ns, naming.credentials_secret("viachart")) or {}
        assert base64.b64decode(creds["data"]["antispam-password"]) == password.read_bytes()
        sts = api.get("apps/v1", "StatefulSet", ns, "viachart") or {}
        assert (
            sts["spec"]["template"]["spec"]["containers"][0]["image"]
            == "localhost/vpes-tenant:test"
        )
    finally:
        op.stop()
    assert "leading as chart-op-0" in op.log_text()
    return ns


def upgrade_to_three_replicas(cluster: Any, api: Kube, values: Path) -> None:
    # The SRS secret is made once (lookup): an upgrade keeps it, or every SRS
    # address the relay handed out would stop verifying at the MX.
    srs = f"/api/v1/namespaces/{NAMESPACE}/secrets/{RELEASE}-edge-srs"
    before = api.request("GET", srs)["data"]
    assert set(before) == {"secret"}
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
    dep = api.request("GET", DEPLOYMENT)
    assert dep["spec"]["replicas"] == 3
    assert api.request("GET", srs)["data"] == before


def uninstall_keeps_crds_plans_and_servers(cluster: Any, api: Kube, plan: str, ns: str) -> None:
    """Every object of the release goes; kept, as users expect: the CRDs, the plans the
    servers are on, the servers. Then the test's own plan and namespace are removed."""
    helm(cluster, "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s")
    wait_for(lambda: not release_left_over(api), "every object of the release to be gone")
    crd = api.request(
        "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/personalmailservers.vpes.io"
    )
    assert crd["metadata"]["name"] == "personalmailservers.vpes.io"
    kept = api.get(API_VERSION, "MailPlan", None, plan)
    assert kept is not None, "the default plan went with the chart"
    assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert api.get(API_VERSION, "PersonalMailServer", ns, "viachart") is not None
    assert api.get("v1", "PersistentVolumeClaim", ns, "viachart-mail") is not None
    api.delete(API_VERSION, "MailPlan", None, plan)
    harvest_secrets(api, ns)
    api.delete("v1", "Namespace", None, ns)


def release_left_over(api: Kube) -> list[str]:
    """The objects of the release still there, as "Kind name"."""
    release = {"labelSelector": f"app.kubernetes.io/instance={RELEASE}"}
    return [
        f"{kind} {item['metadata']['name']}"
        for kind, path in RELEASE_OBJECTS
        for item in api.request("GET", path, query=release)["items"]
    ]


def test_every_chart_setting_is_an_operator_setting(cluster: Any, tmp_path: Path) -> None:
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
        "-f",
        str(values_file(tmp_path, BACKUP_VALUES)),
    ).stdout
    data = yaml.safe_load(rendered)["data"]
    fields = {ENV_PREFIX + name.upper() for name in OperatorSettings.model_fields}
    assert set(data) <= fields, sorted(set(data) - fields)
    settings = OperatorSettings.from_env(data)
    assert settings.mx_host == "mx.example.net"
    assert settings.dns_rfc2136_tsig_secret_file == "/etc/vpes/dns/tsig"
    assert settings.dedicated_service_annotations == {"a": "b"}
    assert settings.backup_s3_bucket == "mail-backups.example"
    assert settings.backup_s3_credentials_secret == "default/vpes-s3"
    assert settings.backup_retention_after_delete_days == 0
    assert settings.backup_s3_egress_cidrs == ("10.20.0.0/16", "2001:db8::/64")
    assert settings.tenant_node_selector == {"vpes.io/pool": "tenants", "disk": "ssd"}


BACKUP_VALUES: dict[str, Any] = {
    "backup": {
        "s3": {
            "endpoint": "https://s3.example.net:9000",
            "region": "eu-west-3",
            "bucket": "mail-backups.example",
            "prefix": "prod/vpes",
            "credentialsSecret": "vpes-s3",
            "jobEndpoint": "http://minio.storage.svc:9000",
            "isolation": "shared",
            "iamEndpoint": "https://iam.example.net",
            "egressCIDRs": ["10.20.0.0/16", "2001:db8::/64"],
        },
        "image": "registry.example.net/vpes-backup:1.2.3",
        "retentionAfterDeleteDays": 0,
    },
    "tenant": {"nodeSelector": {"vpes.io/pool": "tenants", "disk": "ssd"}},
}


def test_backup_values_become_the_operator_environment(cluster: Any, tmp_path: Path) -> None:
    (config,) = render(
        cluster, "templates/operator-config.yaml", "-f", str(values_file(tmp_path, BACKUP_VALUES))
    )
    env = config["data"]
    assert {k: v for k, v in env.items() if k.startswith(("VPES_BACKUP_", "VPES_TENANT_NODE"))} == {
        "VPES_BACKUP_S3_ENDPOINT": "https://s3.example.net:9000",
        "VPES_BACKUP_S3_REGION": "eu-west-3",
        "VPES_BACKUP_S3_BUCKET": "mail-backups.example",
        "VPES_BACKUP_S3_PREFIX": "prod/vpes",
        # The release namespace is filled in: the value is the Secret's name only.
        "VPES_BACKUP_S3_CREDENTIALS_SECRET": "ns1/vpes-s3",
        "VPES_BACKUP_JOB_S3_ENDPOINT": "http://minio.storage.svc:9000",
        "VPES_BACKUP_S3_ISOLATION": "shared",
        "VPES_BACKUP_S3_IAM_ENDPOINT": "https://iam.example.net",
        "VPES_BACKUP_S3_EGRESS_CIDRS": "10.20.0.0/16,2001:db8::/64",
        "VPES_BACKUP_IMAGE": "registry.example.net/vpes-backup:1.2.3",
        "VPES_BACKUP_RETENTION_AFTER_DELETE_DAYS": "0",
        "VPES_TENANT_NODE_SELECTOR": "disk=ssd,vpes.io/pool=tenants",
    }
    # The defaults: backups off (no bucket), no credentials, pods on any node.
    (config,) = render(cluster, "templates/operator-config.yaml")
    env = config["data"]
    assert env["VPES_BACKUP_S3_BUCKET"] == ""
    assert env["VPES_BACKUP_S3_REGION"] == "us-east-1"
    assert env["VPES_BACKUP_S3_PREFIX"] == "vpes"
    assert env["VPES_BACKUP_IMAGE"] == "localhost/vpes-backup:0.1.0"
    assert env["VPES_BACKUP_RETENTION_AFTER_DELETE_DAYS"] == "30"
    assert "VPES_BACKUP_S3_CREDENTIALS_SECRET" not in env
    assert env["VPES_BACKUP_S3_ISOLATION"] == "bucket"  # no Job gets the provider's keys
    assert env["VPES_BACKUP_S3_EGRESS_CIDRS"] == ""  # the endpoint's addresses
    assert "VPES_TENANT_NODE_SELECTOR" not in env


def notes(cluster: Any, *args: str) -> str:
    out = helm(
        cluster, "install", "notes", str(CHART), "-n", "vpes-notes", "--dry-run=client", *args
    ).stdout
    return out[out.index("NOTES:") :]


def test_notes_tell_the_provider_what_to_do_next(cluster: Any, api: Kube) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    text = notes(cluster)
    # A packaged chart ships no examples/ directory: NOTES must not point there.
    assert "examples/" not in text
    assert "OFF: no server is backed up until you set backup.s3.bucket" in text
    # The server NOTES shows is accepted by the API server as it is.
    manifest = text.split("<<'YAML'\n", 1)[1].split("\nYAML\n", 1)[0]
    ns = f"n-{uuid.uuid4().hex[:6]}"
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        out = cluster.kubectl("apply", "-n", ns, "--dry-run=server", "-f", "-", input=manifest)
        assert "personalmailserver.vpes.io/alice created (server dry run)" in out.stdout
    finally:
        api.delete("v1", "Namespace", None, ns)
    text = notes(
        cluster, "--set", "backup.s3.bucket=mail-backups", "--set", "backup.s3.credentialsSecret=s3"
    )
    assert "OFF" not in text
    assert "to s3://mail-backups-<hash of the server>/vpes at AWS (us-east-1)" in text
    assert "S3IdentityUnavailable" in text
    assert "kubectl -n vpes-notes create secret generic s3" in text
    shared = notes(
        cluster, "--set", "backup.s3.bucket=mail-backups", "--set", "backup.s3.isolation=shared"
    )
    assert "to s3://mail-backups/vpes at AWS (us-east-1)" in shared
    assert "delete every customer's backups" in shared


def test_liveness_probe_asks_the_metrics_server(cluster: Any) -> None:
    """/healthz on the metrics port answers on standby replicas too (kopf's does not)."""
    (dep,) = render(cluster, "templates/operator-deployment.yaml")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert f"--metrics-port={ports['metrics']}" in container["args"]
    assert "--liveness=" in container["args"], "kopf's own liveness endpoint is not used"
    assert "--leader-elect" in container["args"]


def test_an_image_tag_that_looks_like_a_number_stays_a_tag(cluster: Any, tmp_path: Path) -> None:
    """Image tags are hashes of their inputs: 27210563e012 is one (and a float to
    YAML 1.2). Values files written by the tools keep it a string."""
    values = {
        "operator": {"image": {"repository": "localhost/vpes-operator", "tag": "27210563e012"}}
    }
    (dep,) = render(
        cluster, "templates/operator-deployment.yaml", "-f", str(values_file(tmp_path, values))
    )
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "localhost/vpes-operator:27210563e012"
