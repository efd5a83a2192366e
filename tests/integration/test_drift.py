"""Children deleted or edited by hand are put back within a bounded time."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from vpes_devcluster.platform import install_platform
from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import Kube

from .operator_support import OperatorProcess, plan_body, server_body, wait_for, wait_ready

INTERVAL = 2  # seconds between drift sweeps in this test (120 by default)
BOUND = 60.0


def test_deleted_and_edited_children_are_put_back(
    api: Kube, cluster: Any, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = install_platform(cluster)
    plan = f"dr-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(plan))
    op = OperatorProcess(
        kubeconfig,
        tmp_path,
        extra_env={"VPES_DRIFT_INTERVAL_SECONDS": str(INTERVAL)},
    )
    op.start()
    try:
        spec = {
            "plan": plan,
            "owner": {"email": "o@example.net"},
            "domains": ["drift.test"],
            "mailboxes": [{"address": "a@drift.test"}],
            "dns": {"mode": "Manual"},
        }
        api.apply(server_body("s", namespace, spec))
        wait_ready(api, namespace, "s")
        policy = naming.network_policy("s")
        old_policy = api.get("networking.k8s.io/v1", "NetworkPolicy", namespace, policy)
        assert old_policy is not None
        selector = api.get("v1", "Service", namespace, "s")["spec"]["selector"]  # type: ignore[index]

        # By hand: the isolation policy deleted, the Service pointed elsewhere.
        api.delete("networking.k8s.io/v1", "NetworkPolicy", namespace, policy)
        api.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/services/s",
            body={"spec": {"selector": {naming.LABEL_SERVER: "someone-else"}}},
            query={"fieldManager": "kubectl-edit"},
            content_type="application/strategic-merge-patch+json",
        )

        def policy_back() -> bool:
            now = api.get("networking.k8s.io/v1", "NetworkPolicy", namespace, policy)
            return bool(now) and now["metadata"]["uid"] != old_policy["metadata"]["uid"]

        def service_back() -> bool:
            svc = api.get("v1", "Service", namespace, "s") or {}
            return bool((svc.get("spec") or {}).get("selector") == selector)

        wait_for(policy_back, "the NetworkPolicy recreated", BOUND)
        wait_for(service_back, "the Service's selector taken back", BOUND)
        server = api.get(API_VERSION, "PersonalMailServer", namespace, "s") or {}
        note = server["metadata"]["annotations"].get(f"{naming.PREFIX}/drift", "")
        assert "missing" in note or "kubectl-edit" in note, note
        assert "drifted" in op.log_text()
    finally:
        op.stop()
        api.delete(API_VERSION, "MailPlan", None, plan)
