"""Install the platform the way a provider does: ``helm install charts/vpes``, with the
operator image (operator and billing) imported into the real node's containerd.

Used by ``make demo`` and the e2e tier: the chart's Deployments, RBAC, probes, leader
election and metrics then run for real."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from vpes_devcluster.binaries import repo_root
from vpes_devcluster.cluster import Cluster
from vpes_devcluster.errors import ClusterError
from vpes_devcluster.node import build_images
from vpes_devcluster.node_config import POD_CIDR

STRIPE_SECRET = "vpes-stripe"  # noqa: S105 (a Secret's name)
S3_SECRET = "vpes-backup-s3"  # noqa: S105 (a Secret's name)


def values(
    operator_image: str,
    tenant_image: str,
    backup_image: str,
    *,
    s3_endpoint: str = "",
    s3_bucket: str = "",
    bcrypt_rounds: int = 10,
    dkim_key_bits: int = 2048,
    edge_image: str = "",
    antispam_image: str = "",
    dav_image: str = "",
    webmail_image: str = "",
    webmail_db_image: str = "",
) -> dict[str, Any]:
    """The chart values for the dev cluster: images by tag (never pulled), the edge's
    networks as the node's pod range, DNS records left to the customer, S3 if given.
    The edge's inbound MX and antispam run (one replica each, the MX on a ClusterIP:
    no load balancer here) when their images are given, else they are off; the
    outbound relay when both are. Calendar plans' Radicale runs from `dav_image`
    when given (the chart's default tag otherwise). The webmail (one replica) runs
    when `webmail_image` and `webmail_db_image` are both given, else it is off."""
    repository, tag = operator_image.rsplit(":", 1)
    image = {"repository": repository, "tag": tag, "pullPolicy": "Never"}
    out: dict[str, Any] = {
        "operator": {"image": image, "logFormat": "plain"},
        "tenant": {
            "image": tenant_image,
            "imagePullPolicy": "Never",
            "bcryptRounds": bcrypt_rounds,
            "dkimKeyBits": dkim_key_bits,
        },
        **({"dav": {"image": dav_image}} if dav_image else {}),
        "edge": {
            "networks": [POD_CIDR],
            "mx": {
                "enabled": bool(edge_image),
                **({"image": _image(edge_image)} if edge_image else {}),
                "replicas": 1,
                "service": {"type": "ClusterIP"},
            },
            "proxy": {
                "enabled": bool(edge_image),
                "replicas": 1,
                "service": {"type": "ClusterIP"},
            },
            "antispam": {
                "enabled": bool(antispam_image),
                **({"image": _image(antispam_image)} if antispam_image else {}),
                "replicas": 1,
            },
            # The outbound relay (the edge image's relay role) counts in the antispam
            # Redis: it runs when both images are given.
            "relay": {"enabled": bool(edge_image and antispam_image), "replicas": 1},
        },
        "dns": {"defaultProvider": "manual"},
        "billing": {"image": dict(image), "publicUrl": "http://127.0.0.1:8080"},
        "backup": {"image": backup_image},
        "webmail": {"enabled": bool(webmail_image and webmail_db_image)},
    }
    if webmail_image and webmail_db_image:
        out["webmail"] |= {
            "replicas": 1,
            "image": _image(webmail_image),
            "db": {"image": _image(webmail_db_image)},
        }
    if s3_bucket:
        out["backup"]["s3"] = {
            "endpoint": s3_endpoint,
            "bucket": s3_bucket,
            "credentialsSecret": S3_SECRET,
        }
    return out


def _image(ref: str) -> dict[str, str]:
    repository, tag = ref.rsplit(":", 1)
    return {"repository": repository, "tag": tag, "pullPolicy": "Never"}


def _secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": encoded,
    }


def install(
    cluster: Cluster,
    release: str,
    namespace: str,
    chart_values: dict[str, Any],
    secrets: dict[str, dict[str, str]] | None = None,
    timeout: str = "3m",
) -> None:
    """``helm upgrade --install`` into ``namespace`` (created, with ``secrets`` and a
    test-mode Stripe Secret for billing), waiting until every Deployment is Ready."""
    cluster.kubectl("create", "namespace", namespace, check=False)
    stripe = {"api-key": "sk_test_devcluster", "webhook-secret": "whsec_devcluster"}
    docs = [_secret(namespace, STRIPE_SECRET, stripe)]
    docs += [_secret(namespace, name, data) for name, data in (secrets or {}).items()]
    cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(docs))
    path = cluster.state_dir / f"helm-{release}.yaml"
    # JSON (which is YAML): every string quoted. PyYAML leaves an image tag such as
    # 27210563e012 bare, and Helm's YAML 1.2 reads that as a number.
    path.write_text(json.dumps(chart_values, indent=1))
    argv = [
        "upgrade", "--install", release, str(repo_root() / "charts" / "vpes"),
        "--namespace", namespace, "--values", str(path), "--wait", "--timeout", timeout,
    ]  # fmt: skip
    helm(cluster, *argv)


def uninstall(cluster: Cluster, release: str, namespace: str) -> None:
    helm(cluster, "uninstall", release, "--namespace", namespace, "--wait", check=False)


def helm(cluster: Cluster, *args: str, check: bool = True) -> str:
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "HELM_CACHE_HOME": str(cluster.state_dir / "helm" / "cache"),
        "HELM_CONFIG_HOME": str(cluster.state_dir / "helm" / "config"),
        "HELM_DATA_HOME": str(cluster.state_dir / "helm" / "data"),
    }
    proc = subprocess.run(
        [str(Path(cluster.bin_dir) / "helm"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if check and proc.returncode != 0:
        raise ClusterError(f"helm {' '.join(args[:3])} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


def operator_images() -> dict[str, str]:
    """The operator, tenant and backup images, built once and then cached."""
    return build_images("operator", "tenant", "backup")
