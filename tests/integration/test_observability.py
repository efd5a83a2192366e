"""Metrics, readiness, JSON logs and leader election of the operator, for real."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from vpes_devcluster.platform import install_platform
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import Kube
from vpes_operator.leader import LeaseConfig

from .operator_support import (
    OperatorProcess,
    plan_body,
    server_body,
    wait_for,
    wait_ready,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def http_status(url: str) -> int:
    try:
        return int(urllib.request.urlopen(url, timeout=5).status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except urllib.error.URLError:
        return 0  # not listening yet


LEASE = "/apis/coordination.k8s.io/v1/namespaces/vpes-system/leases/vpes-operator"


def lease_holder(api: Kube) -> str | None:
    """Who holds the operator's Lease (None once it was given back)."""
    spec = api.request("GET", LEASE).get("spec") or {}
    holder = spec.get("holderIdentity")
    return str(holder) if holder else None


@pytest.fixture(scope="module")
def sa_kubeconfig(cluster: Any) -> Path:
    return install_platform(cluster)


def spec(plan: str, domain: str) -> dict[str, Any]:
    return {
        "plan": plan,
        "owner": {"email": "o@example.net"},
        "domains": [domain],
        "mailboxes": [{"address": f"a@{domain}"}],
    }


def test_metrics_follow_the_tenants_and_json_logs(
    api: Kube, sa_kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    op = OperatorProcess(
        sa_kubeconfig, tmp_path, args=["--metrics-port", str(port), "--log-format", "json"]
    )
    op.start()
    plan = f"m-{uuid.uuid4().hex[:6]}"
    try:
        api.apply(plan_body(plan))
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == 200, "readiness")
        before = scrape(port)
        for i in range(3):
            api.apply(server_body(f"m{i}", namespace, spec(plan, f"m{i}.test")))
        for i in range(3):
            wait_ready(api, namespace, f"m{i}")
        key = f'vpes_tenants{{phase="Ready",plan="{plan}"}}'

        def three_ready() -> dict[str, float] | None:
            m = scrape(port)
            return m if m.get(key) == 3 else None

        after = wait_for(three_ready, f"{key} == 3")
        # Per server, as the alerts need them: which server, not only how many.
        for i in range(3):
            who = f'{{namespace="{namespace}",server="m{i}"}}'
            assert after[f"vpes_tenant_ready{who}"] == 1
            assert after[f"vpes_tenant_suspended{who}"] == 0
        ok = 'vpes_reconciles_total{kind="PersonalMailServer",result="ok"}'
        assert after[ok] >= before.get(ok, 0) + 3
        count = 'vpes_reconcile_duration_seconds_count{kind="PersonalMailServer"}'
        assert after[count] >= before.get(count, 0) + 3
        api.apply(server_body("m0", namespace, {**spec(plan, "m0.test"), "suspended": True}))
        suspended = f'vpes_tenants{{phase="Suspended",plan="{plan}"}}'
        wait_for(lambda: scrape(port).get(suspended) == 1, f"{suspended} == 1")
        m0 = f'{{namespace="{namespace}",server="m0"}}'
        now = scrape(port)
        assert now[f"vpes_tenant_suspended{m0}"] == 1 and now[f"vpes_tenant_ready{m0}"] == 0
        assert http_status(f"http://127.0.0.1:{port}/healthz") == 200
    finally:
        op.stop()
        api.delete(API_VERSION, "MailPlan", None, plan)
    lines = [ln for ln in op.log_text().splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines if ln.startswith("{")]
    assert records, "no JSON log lines"
    assert len(records) >= 0.9 * len(lines), "log lines that are not JSON"
    assert all("message" in r for r in records)


def test_two_replicas_never_reconcile_together(
    api: Kube, sa_kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    plan = f"l-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(plan))
    first = OperatorProcess(
        sa_kubeconfig,
        tmp_path / "a",
        args=[
            "--leader-elect",
            "--identity",
            "replica-a",
            "--lease-namespace",
            "vpes-system",
            "--metrics-port",
            "0",
        ],
    )
    second = OperatorProcess(
        sa_kubeconfig,
        tmp_path / "b",
        args=[
            "--leader-elect",
            "--identity",
            "replica-b",
            "--lease-namespace",
            "vpes-system",
            "--metrics-port",
            "0",
        ],
    )
    try:
        first.start()
        wait_for(
            lambda: lease_holder(api) == "replica-a",
            "replica-a to lead",
        )
        second.start()
        wait_for(lambda: "waiting for leadership" in second.log_text(), "replica-b to stand by")
        api.apply(server_body("one", namespace, spec(plan, "one.test")))
        wait_ready(api, namespace, "one")
        assert "reconcile_server" not in second.log_text(), "the standby reconciled"
        first.stop(kill=True)  # the leader dies without giving the lease back
        wait_for(
            lambda: lease_holder(api) == "replica-b",
            "replica-b to take over after the lease expires",
            timeout=60,
        )
        api.apply(server_body("two", namespace, spec(plan, "two.test")))
        wait_ready(api, namespace, "two")
        assert "reconcile_server" in second.log_text()
    finally:
        first.stop()
        second.stop()
        api.delete(API_VERSION, "MailPlan", None, plan)


def test_sigterm_hands_the_lease_over_at_once(
    api: Kube, sa_kubeconfig: Path, namespace: str, tmp_path: Path
) -> None:
    """A leader stopped gracefully gives the Lease back: the standby leads at once.

    Without that, the standby would wait for the lease to expire: at least
    duration - renew_every seconds after the leader's last renewal.
    """
    cfg = LeaseConfig("vpes-system", "vpes-operator", "x")
    plan = f"g-{uuid.uuid4().hex[:6]}"
    api.apply(plan_body(plan))
    ports = {"replica-c": free_port(), "replica-d": free_port()}
    replicas = {
        name: OperatorProcess(
            sa_kubeconfig,
            tmp_path / name,
            args=[
                "--leader-elect",
                "--identity",
                name,
                "--lease-namespace",
                "vpes-system",
                "--metrics-port",
                str(port),
            ],
        )
        for name, port in ports.items()
    }
    first, second = replicas["replica-c"], replicas["replica-d"]

    def healthz(name: str) -> int:
        return http_status(f"http://127.0.0.1:{ports[name]}/healthz")

    try:
        first.start()
        # Another test's leader, killed, may hold the lease until it expires.
        wait_for(lambda: lease_holder(api) == "replica-c", "replica-c to lead", timeout=60)
        second.start()
        wait_for(lambda: "waiting for leadership" in second.log_text(), "replica-d to stand by")
        # The standby has not started kopf, yet its liveness probe answers (the
        # chart's probe asks the metrics port), and it is ready to take over.
        assert healthz("replica-d") == 200
        assert http_status(f"http://127.0.0.1:{ports['replica-d']}/readyz") == 200
        assert healthz("replica-c") == 200
        assert second.proc is not None and first.proc is not None
        signalled = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        wait_for(
            lambda: lease_holder(api) == "replica-d", "replica-d to lead", timeout=cfg.duration + 10
        )
        took = time.monotonic() - signalled
        assert took < cfg.duration - cfg.renew_every - 1, f"took {took:.1f}s: the lease expired"
        assert first.proc.wait(timeout=30) == 0, "a graceful stop exits 0"
        assert "gave back lease" in first.log_text()
        # The new leader reconciles, and its liveness still answers with kopf running.
        api.apply(server_body("after", namespace, spec(plan, "after.test")))
        wait_ready(api, namespace, "after")
        assert "reconcile_server" in second.log_text()
        assert healthz("replica-d") == 200
        second.stop()
        assert "gave back lease" in second.log_text()
    finally:
        first.stop()
        second.stop()
        api.delete(API_VERSION, "MailPlan", None, plan)
