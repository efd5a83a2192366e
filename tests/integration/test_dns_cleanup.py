"""A server's DNS cleanup never leaves anything Terminating forever.

When removing its records keeps failing, the deletion goes on after the last
attempt and what was left in DNS is reported (event, log, metric); when a
server went without its cleanup at all (its finalizer removed by hand), the
drift sweep gives its `<server>-dns` ConfigMap the cleanup and releases it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube

from .dns_support import ZONE, KnotServer, free_port, scrape
from .operator_support import (
    OperatorProcess,
    get_server,
    harvest_secrets,
    install_platform,
    server_body,
    wait_for,
)
from .rfc2136_support import dns_env, events_of, plan, spec, wait_condition

__all__ = ["plan"]  # a fixture
PMS_API = API_VERSION


@pytest.fixture(scope="module")
def kubeconfig(cluster: Any) -> Path:
    """The platform (CRDs, RBAC) before the plan fixture applies a MailPlan."""
    return install_platform(cluster)


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[KnotServer]:
    server = KnotServer(tmp_path / "knot")
    server.start()
    yield server
    server.stop()


def start_operator(
    kubeconfig: Path, knot: KnotServer, tmp_path: Path, port: int
) -> OperatorProcess:
    secret = tmp_path / "tsig"
    secret.write_text(knot.secret)
    env = {
        **dns_env(knot, secret),
        "VPES_DNS_CLEANUP_ATTEMPTS": "2",
        "VPES_DRIFT_INTERVAL_SECONDS": "2",
    }
    op = OperatorProcess(kubeconfig, tmp_path / "op", env, args=["--metrics-port", str(port)])
    op.start()
    return op


def test_records_that_cannot_be_removed_are_reported_and_the_deletion_goes_on(
    kubeconfig: Path, api: Kube, knot: KnotServer, namespace: str, plan: str, tmp_path: Path
) -> None:
    port = free_port("127.0.0.1")
    op = start_operator(kubeconfig, knot, tmp_path, port)
    try:
        d = f"stuck-{uuid.uuid4().hex[:4]}.{ZONE}"
        api.apply(server_body("stuck", namespace, spec(plan, d)))
        wait_condition(api, namespace, "stuck", "DNSPublished", "True")
        knot.stop()  # every removal now fails
        harvest_secrets(api, namespace)
        api.delete(API_VERSION, "PersonalMailServer", namespace, "stuck")
        wait_for(lambda: get_server(api, namespace, "stuck") is None, "the server gone", 90)
        wait_for(
            lambda: api.get("v1", "ConfigMap", namespace, "stuck-dns") is None,
            "its DNS ConfigMap released",
            60,
        )
        (event,) = [
            e for e in events_of(api, namespace, "stuck") if e["reason"] == "DNSCleanupFailed"
        ]
        assert "records left in DNS" in event["message"]
        assert "left in DNS" in op.log_text()
        assert scrape(port).get("vpes_dns_records_left_total", 0) >= 1
    finally:
        op.stop()


def test_a_server_gone_without_its_cleanup_gets_it_from_the_sweep(
    kubeconfig: Path, api: Kube, knot: KnotServer, namespace: str, plan: str, tmp_path: Path
) -> None:
    port = free_port("127.0.0.1")
    op = start_operator(kubeconfig, knot, tmp_path, port)
    d = f"orphan-{uuid.uuid4().hex[:4]}.{ZONE}"
    try:
        api.apply(server_body("orphan", namespace, spec(plan, d)))
        wait_condition(api, namespace, "orphan", "DNSVerified", "True")
        assert knot.query(d, "MX")
        op.stop()
        # By hand, with the operator away: the server's finalizer dropped, the server deleted.
        harvest_secrets(api, namespace)
        api.delete(API_VERSION, "PersonalMailServer", namespace, "orphan")
        api.patch_metadata(
            API_VERSION, "PersonalMailServer", namespace, "orphan", {"finalizers": []}
        )
        wait_for(lambda: get_server(api, namespace, "orphan") is None, "the server gone")
        cm = wait_for(
            lambda: (
                (c := api.get("v1", "ConfigMap", namespace, "orphan-dns"))
                and c["metadata"].get("deletionTimestamp")
                and c
            ),
            "its DNS ConfigMap held Terminating by its finalizer",
        )
        assert cm["metadata"]["finalizers"]
        op.start()
        wait_for(
            lambda: api.get("v1", "ConfigMap", namespace, "orphan-dns") is None,
            "the orphaned DNS ConfigMap released by the sweep",
            60,
        )
        assert knot.query(d, "MX") == [], "its records were removed on the way"
    finally:
        op.stop()
