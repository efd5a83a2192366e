"""The operator's ServiceAccount, as the chart makes it: cluster-wide verbs, confined
by an admission policy to the namespaces it serves, and no listing of Secrets."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from vpes_devcluster.platform import OPERATOR_NAMESPACE, install_platform
from vpes_operator.clients.kube import ApiError, Kube

from .operator_support import wait_for


@pytest.fixture(scope="module")
def as_operator(cluster: Any) -> Kube:
    kubeconfig: Path = install_platform(cluster)
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return Kube(api, field_manager="vpes-operator")


def job(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"x-{uuid.uuid4().hex[:6]}", "namespace": namespace},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "localhost/none", "command": ["true"]}],
                }
            }
        },
    }


def refused(call: Any) -> ApiError:
    with pytest.raises(ApiError) as e:
        call()
    assert e.value.status == 403, e.value
    return e.value


def create_when_policy_active(as_operator: Kube, obj: dict[str, Any]) -> ApiError:
    """The policy takes a moment to be loaded after it is applied: wait for the refusal."""

    def attempt() -> list[ApiError] | None:
        try:
            created = as_operator.create(obj)
        except ApiError as e:
            return [e] if e.status == 403 else None
        as_operator.delete(
            "batch/v1", "Job", obj["metadata"]["namespace"], created["metadata"]["name"]
        )
        obj["metadata"]["name"] = f"x-{uuid.uuid4().hex[:6]}"
        return None

    return wait_for(attempt, "the operator's admission policy to refuse", timeout=30)[0]


def test_a_job_in_kube_system_is_refused(as_operator: Kube, namespace: str) -> None:
    error = create_when_policy_active(as_operator, job("kube-system"))
    assert "serves customer namespaces only, not kube-system" in error.message
    # In a customer's namespace the same Job is allowed (backups run that way).
    made = as_operator.create(job(namespace))
    assert as_operator.delete("batch/v1", "Job", namespace, made["metadata"]["name"])


def test_in_its_own_namespace_only_key_secrets(as_operator: Kube) -> None:
    create_when_policy_active(as_operator, job("kube-system"))  # the policy is active
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": OPERATOR_NAMESPACE},
    }
    error = refused(lambda: as_operator.create(config))
    assert "writes only the backup keys' Secrets" in error.message
    key = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": f"backup-key-t-{uuid.uuid4().hex[:6]}",
            "namespace": OPERATOR_NAMESPACE,
        },
        "stringData": {"password": "x" * 32},
    }
    as_operator.create(key)
    assert as_operator.delete("v1", "Secret", OPERATOR_NAMESPACE, key["metadata"]["name"])


def test_secrets_are_read_by_name_never_listed(as_operator: Kube, namespace: str) -> None:
    refused(lambda: as_operator.list("v1", "Secret", namespace))
    refused(lambda: as_operator.request("GET", "/api/v1/secrets"))


def test_it_deletes_tenant_pods_only(as_operator: Kube, api: Kube, namespace: str) -> None:
    """Pods: deleted only when a tenant's (a StatefulSet's forced rollback, rollout.py)."""
    create_when_policy_active(as_operator, job("kube-system"))  # the policy is active

    def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "localhost/none"}]},
        }

    api.create(pod("other", {"app": "something-else"}))
    api.create(pod("tenant", {"app.kubernetes.io/name": "vpes-tenant"}))
    error = refused(lambda: as_operator.delete("v1", "Pod", namespace, "other"))
    assert "deletes only tenant pods (a stuck rollout), not other" in error.message
    assert as_operator.delete("v1", "Pod", namespace, "tenant")
