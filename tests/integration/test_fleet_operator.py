"""A FleetUpgrade run by the operator itself (its kopf timer, its live health gate) as the
chart's ServiceAccount: the canary server's StatefulSet moves to the new image (the
server's reconcile reads the image the upgrade sets), its pod is recreated on it, and
the gate fails anyway, so the wave is rolled back: the StatefulSet returns to the
fleet's image, with a message and an event saying why.

This tier's nodes are kwok's: they mark a pod Running and Ready without running
anything. So the gate's first half (the pod runs the image, ready) passes and its
second half (SMTP's 220 and IMAP's `* OK` through the Service) fails: a Ready pod is
not enough. The gate passing for real needs the real node (the e2e tier).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from vpes_operator import API_VERSION, naming
from vpes_operator.clients.kube import Kube

from .operator_support import (
    OperatorProcess,
    install_platform,
    plan_body,
    server_body,
    wait_for,
)

DEFAULT = "registry.test/vpes-tenant:1"
NEW = "registry.test/vpes-tenant:2"


@pytest.fixture(scope="module")
def operator(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    kubeconfig = install_platform(cluster)
    env = {"VPES_TENANT_IMAGE": DEFAULT, "VPES_FLEET_TICK": "1", "VPES_FLEET_PROBE_TIMEOUT": "1"}
    op = OperatorProcess(kubeconfig, tmp_path_factory.mktemp("operator"), extra_env=env)
    op.start()
    yield op
    op.stop()


@pytest.fixture
def plan(api: Kube) -> Iterator[str]:
    name = f"plan-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(name))
    yield name
    api.delete(API_VERSION, "MailPlan", None, name)


def mail_image(api: Kube, namespace: str, server: str) -> str | None:
    sts = api.get("apps/v1", "StatefulSet", namespace, naming.statefulset(server))
    if sts is None:
        return None
    containers = sts["spec"]["template"]["spec"]["containers"]
    return str(next(c for c in containers if c["name"] == "mail")["image"])


def test_the_operator_moves_the_canary_and_rolls_it_back_when_the_gate_fails(
    api: Kube, operator: OperatorProcess, namespace: str, plan: str
) -> None:
    spec = {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": ["fleet.example.org"],
        "mailboxes": [{"address": "a@fleet.example.org"}],
    }
    body = server_body("alice", namespace, spec)
    body["metadata"]["labels"] = {"fleet-test": namespace}
    api.create(body)
    wait_for(lambda: mail_image(api, namespace, "alice") == DEFAULT, "the fleet's image", 60)

    name = f"up-{uuid.uuid4().hex[:6]}"
    api.create(
        {
            "apiVersion": API_VERSION,
            "kind": "FleetUpgrade",
            "metadata": {"name": name},
            "spec": {
                "image": NEW,
                "selector": {"matchLabels": {"fleet-test": namespace}},
                "canary": 1,
                "healthTimeoutSeconds": 10,
            },
        }
    )
    try:
        wait_for(lambda: mail_image(api, namespace, "alice") == NEW, "the canary's new image", 60)

        def ended() -> dict[str, Any] | None:
            got = api.get(API_VERSION, "FleetUpgrade", None, name) or {}
            status = got.get("status") or {}
            return status if status.get("phase") == "RolledBack" else None

        status = wait_for(ended, "the rollback", 90)
        assert f"{namespace}/alice: SMTP on " in status["message"]
        host = f"alice.{namespace}.svc.cluster.local"
        # Past the pod's half of the gate (kwok's pod is Ready on the image), stopped at SMTP.
        assert status["failures"][0]["message"].startswith(f"SMTP on {host}:25 did not answer")
        wait_for(lambda: mail_image(api, namespace, "alice") == DEFAULT, "the image back", 60)
        server = api.get(API_VERSION, "PersonalMailServer", namespace, "alice") or {}
        annotations = server["metadata"].get("annotations") or {}
        assert naming.ANNOTATION_TENANT_IMAGE not in annotations
        assert naming.ANNOTATION_UPGRADE not in annotations

        def events() -> list[str] | None:
            found = [
                e["reason"]
                for e in api.list("v1", "Event", "default")
                if e["involvedObject"].get("name") == name
            ]
            return found if {"WaveStarted", "RolledBack"} <= set(found) else None

        wait_for(events, "the upgrade's WaveStarted and RolledBack events", 30)
    finally:
        api.delete(API_VERSION, "FleetUpgrade", None, name)


def test_deleting_a_running_upgrade_sends_its_wave_back_and_releases_the_claim(
    api: Kube, operator: OperatorProcess, namespace: str, plan: str
) -> None:
    spec = {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": ["abandon.example.org"],
        "mailboxes": [{"address": "a@abandon.example.org"}],
    }
    body = server_body("bob", namespace, spec)
    body["metadata"]["labels"] = {"fleet-test": namespace}
    api.create(body)
    wait_for(lambda: mail_image(api, namespace, "bob") == DEFAULT, "the fleet's image", 60)
    name = f"up-{uuid.uuid4().hex[:6]}"
    api.create(
        {
            "apiVersion": API_VERSION,
            "kind": "FleetUpgrade",
            "metadata": {"name": name},
            "spec": {
                "image": NEW,
                "selector": {"matchLabels": {"fleet-test": namespace}},
                "canary": 1,
                "healthTimeoutSeconds": 600,  # the gate never passes here: still in flight
            },
        }
    )
    wait_for(lambda: mail_image(api, namespace, "bob") == NEW, "the canary's new image", 60)
    api.delete(API_VERSION, "FleetUpgrade", None, name)
    wait_for(lambda: mail_image(api, namespace, "bob") == DEFAULT, "the canary sent back", 60)
    wait_for(
        lambda: api.get(API_VERSION, "FleetUpgrade", None, name) is None,
        "the upgrade gone (its finalizer removed)",
        30,
    )
    server = api.get(API_VERSION, "PersonalMailServer", namespace, "bob") or {}
    annotations = server["metadata"].get("annotations") or {}
    assert naming.ANNOTATION_TENANT_IMAGE not in annotations
    assert naming.ANNOTATION_UPGRADE not in annotations
