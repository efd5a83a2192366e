"""Install vpes into a running cluster the way the chart will: CRDs, namespace, RBAC.

Shared by the integration tests, the benchmarks and the demo, so that all
three run the operator as the chart's ServiceAccount with the chart's RBAC.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .binaries import repo_root
from .cluster import Cluster

OPERATOR_NAMESPACE = "vpes-system"
SERVICE_ACCOUNT = "vpes-operator"


RBAC_TEMPLATE = "templates/operator-rbac.yaml"


def chart_rbac(
    cluster: Cluster, namespace: str = OPERATOR_NAMESPACE, template: str = RBAC_TEMPLATE
) -> str:
    """RBAC (the operator's by default) exactly as `helm template` renders it from the chart."""
    return subprocess.run(
        [
            str(Path(cluster.bin_dir) / "helm"),
            "template",
            "vpes",
            str(repo_root() / "charts" / "vpes"),
            "-n",
            namespace,
            "--show-only",
            template,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def install_crds(cluster: Cluster) -> None:
    crds = sorted((repo_root() / "crds").glob("*.yaml"))
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *(f"-f={c}" for c in crds))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=vpes",
        "--timeout=60s",
    )


def install_platform(cluster: Cluster, token_seconds: int = 24 * 3600) -> Path:
    """CRDs, the operator namespace and the chart's RBAC; returns the SA's kubeconfig."""
    install_crds(cluster)
    return install_rbac(
        cluster, OPERATOR_NAMESPACE, RBAC_TEMPLATE, SERVICE_ACCOUNT, "operator", token_seconds
    )


def install_rbac(
    cluster: Cluster,
    namespace: str,
    template: str,
    service_account: str,
    kubeconfig_name: str,
    token_seconds: int = 24 * 3600,
) -> Path:
    """The chart's RBAC `template` applied in `namespace` (created if missing); returns
    a kubeconfig (`<kubeconfig_name>.kubeconfig` beside the admin's) of a token of
    `service_account`, valid for `token_seconds`."""
    cluster.kubectl("create", "namespace", namespace, check=False)
    rbac = chart_rbac(cluster, namespace, template)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=rbac)
    token = cluster.token_for(namespace, service_account, token_seconds)
    path = Path(cluster.kubeconfig).parent / f"{kubeconfig_name}.kubeconfig"
    return Path(cluster.write_kubeconfig_for_token(token, path))
