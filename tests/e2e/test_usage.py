"""A server's storage as the operator measures it on the real node: status.usage
(volume and mailbox figures) and StorageHealthy are filled from the pod's usage
report, reached over the pod network (no exec, no kubelet API), and follow the mail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from vpes_devcluster import Cluster
from vpes_operator.clients.kube import Kube
from vpes_operator.models.conditions import Reason

from tests.e2e import support
from tests.integration.operator_support import OperatorProcess, get_server, wait_for, wait_ready

DOMAIN = "usage.example"
MEASURED = {Reason.STORAGE_AVAILABLE, Reason.VOLUME_NEARLY_FULL, Reason.VOLUME_FULL}


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from support.start_operator(
        cluster,
        images["tenant"],
        tmp_path_factory.mktemp("operator-usage"),
        VPES_USAGE_INTERVAL_SECONDS="3",
    )


def _usage(api: Kube, ns: str, name: str) -> dict[str, Any]:
    return dict(((get_server(api, ns, name) or {}).get("status") or {}).get("usage") or {})


def _storage(api: Kube, ns: str, name: str) -> dict[str, Any] | None:
    status = (get_server(api, ns, name) or {}).get("status") or {}
    found = [c for c in status.get("conditions") or [] if c["type"] == "StorageHealthy"]
    return found[0] if found else None


def test_status_usage_is_measured_in_the_pod(
    api: Kube, operator: OperatorProcess, namespace: str
) -> None:
    plan = support.small_plan(api)
    address = support.create_server(api, namespace, "stored", plan, DOMAIN)
    wait_ready(api, namespace, "stored", timeout=180)
    service = support.service_ip(api, namespace, "stored")
    support.send(service, f"carol@{DOMAIN}", address, "counted")
    support.wait_subjects(service, address, ["counted"])

    def counted() -> dict[str, Any] | None:
        usage = _usage(api, namespace, "stored")
        boxes = {b["address"]: b for b in usage.get("mailboxUsage") or []}
        box = boxes.get(address) or {}
        return usage if box.get("messages") == 1 and box.get("usedBytes", 0) > 0 else None

    usage = wait_for(counted, "the mailbox's message counted in status.usage", timeout=60)
    assert 0 < usage["storageUsedBytes"] <= usage["storageCapacityBytes"]
    assert 0 <= usage["storageAvailableBytes"] <= usage["storageCapacityBytes"]
    assert usage["quotaCommittedBytes"] == 256 << 20
    assert usage["measuredAt"]
    box = next(b for b in usage["mailboxUsage"] if b["address"] == address)
    assert box["quotaBytes"] == 256 << 20
    cond = _storage(api, namespace, "stored")
    assert cond is not None and cond["reason"] in MEASURED, cond

    # The figures keep being measured: a second message is counted too.
    support.send(service, f"carol@{DOMAIN}", address, "counted again")

    def recounted() -> bool:
        boxes = _usage(api, namespace, "stored").get("mailboxUsage") or []
        return any(b["address"] == address and b.get("messages") == 2 for b in boxes)

    wait_for(recounted, "the second message counted", timeout=60)
