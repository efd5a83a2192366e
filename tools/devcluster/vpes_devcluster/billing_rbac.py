"""Billing's chart RBAC and admission policy, installed into a development cluster the
way the chart installs them, and the billing ServiceAccount's kubeconfig."""

from __future__ import annotations

import time
from pathlib import Path

from vpes_operator.clients.kube import ApiError, Kube

from vpes_devcluster.cluster import Cluster
from vpes_devcluster.kubeconfig import api_client
from vpes_devcluster.platform import install_rbac

SERVICE_ACCOUNT = "vpes-billing"
SCOPE_POLICY = "vpes-billing-scope"  # the chart's ValidatingAdmissionPolicy (release "vpes")
RBAC_TEMPLATE = "templates/billing-rbac.yaml"


def install_billing(cluster: Cluster, namespace: str = "vpes-system") -> Path:
    """Billing's chart RBAC and admission policy; returns a kubeconfig of its
    ServiceAccount, once the policy is enforced."""
    kubeconfig = install_rbac(cluster, namespace, RBAC_TEMPLATE, SERVICE_ACCOUNT, "billing")
    wait_for_scope_policy(kubeconfig, namespace)
    return kubeconfig


def kube_for(kubeconfig: Path, field_manager: str = "vpes-billing") -> Kube:
    return Kube(api_client(kubeconfig), field_manager=field_manager)


def wait_for_scope_policy(kubeconfig: Path, namespace: str, timeout: float = 60.0) -> None:
    """Until the API server enforces the chart's policy on billing: a dry-run
    RoleBinding in billing's own namespace (which RBAC alone allows) is refused."""
    kube = kube_for(kubeconfig)
    probe = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "vpes-billing-policy-probe", "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "vpes-billing-tenant",
        },
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}],
    }
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                kube.create(probe, dry_run=True)
            except ApiError as e:
                if SCOPE_POLICY in e.body:
                    return
                if e.status != 403:  # 403 from RBAC while the role binding settles
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"policy {SCOPE_POLICY} not enforced within {timeout:.0f}s")
            time.sleep(0.2)
    finally:
        kube.api.close()  # type: ignore[no-untyped-call]
