"""A server's life on real pods: a plan change restarts the pod with the new limits
and keeps the mail; suspension stops the pod and keeps the mail, which resuming
brings back; an operator killed in the middle of a reconcile converges once
restarted; deleting the server removes every child object."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from vpes_devcluster import Cluster
from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import Kube

from tests.e2e import support
from tests.integration.operator_support import (
    OperatorProcess,
    get_server,
    wait_for,
    wait_ready,
)

DOMAIN = "life.example"


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from support.start_operator(
        cluster, images["tenant"], tmp_path_factory.mktemp("operator-lifecycle")
    )


def _memory_limit(pod: dict[str, Any]) -> str:
    container = pod["spec"]["containers"][0]
    return str(container["resources"]["limits"]["memory"])


def _ready_pod(api: Kube, ns: str, name: str, memory: str) -> dict[str, Any]:
    """The server's pod, Ready, with ``memory`` as its limit."""

    def found() -> dict[str, Any] | None:
        for pod in api.list("v1", "Pod", ns, labels=naming.pod_selector(name)):
            conditions = (pod.get("status") or {}).get("conditions") or []
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            if (
                ready
                and _memory_limit(pod) == memory
                and not pod["metadata"].get("deletionTimestamp")
            ):
                return pod
        return None

    return wait_for(found, f"a Ready pod of {ns}/{name} limited to {memory}", timeout=180)


def _set_spec(api: Kube, ns: str, name: str, **changes: Any) -> None:
    server = get_server(api, ns, name)
    assert server is not None
    spec = {**server["spec"], **changes}
    api.apply({"apiVersion": API_VERSION, "kind": "PersonalMailServer",
               "metadata": {"name": name, "namespace": ns}, "spec": spec})  # fmt: skip


def _converged(api: Kube, ns: str, name: str) -> dict[str, Any] | None:
    obj = get_server(api, ns, name) or {}
    status = obj.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    current = status.get("observedGeneration") == obj.get("metadata", {}).get("generation")
    return obj if current and ready and ready[0]["status"] == "True" else None


def test_resize_suspend_resume_kill_and_delete(
    api: Kube, operator: OperatorProcess, namespace: str
) -> None:
    small = support.small_plan(api, memory="256Mi")
    large = support.small_plan(api, memory="320Mi")
    try:
        address = support.create_server(api, namespace, "dana", small, DOMAIN)
        wait_ready(api, namespace, "dana", timeout=240)
        first = _ready_pod(api, namespace, "dana", "256Mi")
        host = support.service_ip(api, namespace, "dana")
        support.send(host, f"carol@{DOMAIN}", address, "kept")
        support.wait_subjects(host, address, ["kept"])

        # A bigger plan: a new pod with the new limit, the same mail.
        _set_spec(api, namespace, "dana", plan=large)
        resized = _ready_pod(api, namespace, "dana", "320Mi")
        assert resized["metadata"]["uid"] != first["metadata"]["uid"]
        wait_for(lambda: _converged(api, namespace, "dana"), "resize converged", timeout=120)
        support.wait_subjects(host, address, ["kept"])

        # Suspended: no pod, the volume stays; resumed: the same mail.
        _set_spec(api, namespace, "dana", suspended=True)
        wait_for(
            lambda: not api.list("v1", "Pod", namespace, labels=naming.pod_selector("dana")),
            "no pod while suspended",
            timeout=120,
        )
        assert api.get("v1", "PersistentVolumeClaim", namespace, naming.volume_claim("dana"))
        _set_spec(api, namespace, "dana", suspended=False)
        _ready_pod(api, namespace, "dana", "320Mi")
        support.wait_subjects(host, address, ["kept"])

        # Killed in the middle of a reconcile (right after a change), then restarted.
        _set_spec(api, namespace, "dana", plan=small)
        assert operator.proc is not None
        operator.proc.send_signal(signal.SIGKILL)
        operator.stop()
        operator.start()
        _ready_pod(api, namespace, "dana", "256Mi")
        wait_for(lambda: _converged(api, namespace, "dana"), "converged after a kill", timeout=180)
        support.wait_subjects(host, address, ["kept"])

        # Deleted: every child goes.
        support.delete_server(api, namespace, "dana")
        children = [
            ("apps/v1", "StatefulSet", naming.statefulset("dana")),
            ("v1", "Service", naming.service("dana")),
            ("v1", "ConfigMap", naming.config_map("dana")),
            ("v1", "Secret", naming.credentials_secret("dana")),
            ("v1", "PersistentVolumeClaim", naming.volume_claim("dana")),
            ("networking.k8s.io/v1", "NetworkPolicy", naming.network_policy("dana")),
        ]

        def gone() -> bool:
            left = [k for v, k, n in children if api.get(v, k, namespace, n) is not None]
            pods = api.list("v1", "Pod", namespace, labels=naming.pod_selector("dana"))
            return not left and not pods and get_server(api, namespace, "dana") is None

        wait_for(gone, "the server and every child gone", timeout=180)
    finally:
        for plan in (small, large):
            api.delete(API_VERSION, "MailPlan", None, plan)
