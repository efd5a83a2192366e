"""Bad input on the real node: what keeps a server's pod from running is a condition
on the PersonalMailServer that names the cause, never a silent "waiting for the pod".

- The tenant image the operator is set to use is not in the node's containerd (the
  node has no image of that name: the same as a node without the image).
- The plan's storage class does not exist, so the volume claim never binds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from vpes_devcluster import Cluster
from vpes_operator.clients.kube import Kube

from tests.e2e import support
from tests.integration.operator_support import OperatorProcess, condition, get_server, wait_for

MISSING_IMAGE = f"localhost/vpes-tenant:missing-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator told to use a tenant image that the node does not have."""
    yield from support.start_operator(
        cluster,
        MISSING_IMAGE,
        tmp_path_factory.mktemp("operator-bad-input"),
        VPES_IMAGE_PULL_POLICY="Never",
    )


def _ready_reason(api: Kube, ns: str, name: str, reason: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        server = get_server(api, ns, name)
        ready = condition(server, "Ready")
        return server if ready and ready["reason"] == reason else None

    server = wait_for(found, f"Ready of {ns}/{name} to say {reason}", timeout=120)
    assert server["status"]["phase"] == "Failed"
    return server


def test_a_tenant_image_missing_from_the_node_is_named(
    api: Kube, operator: OperatorProcess, namespace: str
) -> None:
    plan = support.small_plan(api)
    support.create_server(api, namespace, "noimage", plan, "noimage.example")
    server = _ready_reason(api, namespace, "noimage", "ImageUnavailable")
    message = condition(server, "Ready")["message"]  # type: ignore[index]
    assert MISSING_IMAGE in message and "containerd" in message
    assert "ImageUnavailable" in server["status"]["message"]


def test_a_volume_claim_that_cannot_bind_is_named(
    api: Kube, operator: OperatorProcess, namespace: str
) -> None:
    plan = support.small_plan(api, storageClassName="no-such-class")
    support.create_server(api, namespace, "nobind", plan, "nobind.example")
    server = _ready_reason(api, namespace, "nobind", "VolumeNotBound")
    message = condition(server, "Ready")["message"]  # type: ignore[index]
    assert "nobind-mail" in message and "no-such-class" in message
