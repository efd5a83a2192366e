"""The edge's maps, kept by the operator (as the chart's ServiceAccount) in one
ConfigMap: they follow the servers within seconds, and a domain two servers list
stays with the one created first until it is deleted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from vpes_devcluster.platform import OPERATOR_NAMESPACE, install_platform
from vpes_operator import API_VERSION
from vpes_operator.clients.kube import ApiError, Kube

from .operator_support import (
    OperatorProcess,
    condition,
    get_server,
    harvest_secrets,
    plan_body,
    server_body,
    wait_for,
)

SOON = 30.0  # a change reaches the maps within seconds; generous for a loaded machine


@pytest.fixture
def other_namespaces(api: Kube) -> Iterator[list[str]]:
    """Two more fresh namespaces: a second customer's, and the one the maps live in."""
    names = [f"t-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for name in names:
        api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield names
    finally:
        for name in names:
            harvest_secrets(api, name)
            api.delete("v1", "Namespace", None, name)


def spec(plan: str, domains: list[str], mailboxes: list[str]) -> dict[str, Any]:
    return {
        "plan": plan,
        "owner": {"email": "owner@example.net"},
        "domains": domains,
        "mailboxes": [{"address": m} for m in mailboxes],
        "dns": {"mode": "Manual"},
    }


def routed(api: Kube, namespace: str, name: str, reason: str) -> dict[str, Any] | None:
    c = condition(get_server(api, namespace, name), "DomainsRouted")
    return c if c and c["reason"] == reason else None


def test_maps_follow_the_servers_and_a_taken_domain_stays_with_the_first(
    api: Kube, cluster: Any, namespace: str, other_namespaces: list[str], tmp_path: Path
) -> None:
    ns_b, maps_ns = other_namespaces
    tag = uuid.uuid4().hex[:6]
    one, two, shared = f"one-{tag}.test", f"two-{tag}.test", f"shared-{tag}.test"
    maps_name = f"edge-{tag}"
    plan = f"em-{tag}"
    kubeconfig = install_platform(cluster)
    api.apply(plan_body(plan, features={"antispam": "Strict"}))
    # The chart's admission policy does not let the operator write ConfigMaps in its own
    # namespace yet (see test_the_chart_lets_the_operator_write_its_edge_maps): the maps
    # go to a namespace of this test.
    op = OperatorProcess(
        kubeconfig,
        tmp_path,
        extra_env={"VPES_OPERATOR_NAMESPACE": maps_ns, "VPES_EDGE_MAPS_NAME": maps_name},
    )
    op.start()

    def maps(*wanted: str, absent: str = "") -> dict[str, str] | None:
        cm = api.get("v1", "ConfigMap", maps_ns, maps_name)
        data: dict[str, str] = (cm or {}).get("data") or {}
        text = "".join(data.values())
        return data if all(w in text for w in wanted) and not (absent and absent in text) else None

    try:
        api.apply(server_body("first", namespace, spec(plan, [one, shared], [f"a@{one}"])))
        wait_for(
            lambda: maps(f"{one} {namespace}/first\n"),
            "the maps with the first server's domains",
            SOON * 2,  # the operator starts first
        )
        # Created seconds after the first (creationTimestamp counts whole seconds).
        api.apply(server_body("second", ns_b, spec(plan, [two], [f"b@{two}"])))
        data = wait_for(
            lambda: maps(f"{one} {namespace}/first\n", f"{two} {ns_b}/second\n"),
            "the maps with both servers' domains",
            SOON,
        )
        assert f"{shared} {namespace}/first\n" in data["domains"]
        assert f"a@{one} OK\n" in data["recipients"]
        assert f"postmaster@{two} OK\n" in data["recipients"]
        assert f"{two} smtp:[second.{ns_b}.svc.cluster.local]:25\n" in data["transport"]
        assert f"{one} strict\n" in data["antispam"]
        assert data["access"] == ""
        assert len(data["version"].strip()) == 64
        cm = api.get("v1", "ConfigMap", maps_ns, maps_name) or {}
        labels = cm["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "vpes"
        assert labels["vpes.io/component"] == "edge-maps"
        wait_for(lambda: routed(api, namespace, "first", "Routed"), "first: DomainsRouted")

        # A mailbox changes: the maps follow within seconds.
        api.apply(server_body("first", namespace, spec(plan, [one, shared], [f"z@{one}"])))
        wait_for(lambda: maps(f"z@{one} OK\n", absent=f"a@{one} OK"), "the new mailbox", SOON)

        # The second server claims the first one's domain: it does not get it.
        api.apply(server_body("second", ns_b, spec(plan, [two, shared], [f"b@{two}"])))
        taken = wait_for(
            lambda: routed(api, ns_b, "second", "DomainTaken"), "second: DomainTaken", SOON
        )
        assert taken["status"] == "False"
        assert taken["message"] == (
            f"{shared} is already served by {namespace}/first (created earlier); remove it "
            "from spec.domains or ask the provider"
        )
        data = wait_for(lambda: maps(f"{shared} {namespace}/first\n"), "the shared domain")
        assert f"{shared} {ns_b}/second" not in data["domains"]
        assert f"postmaster@{shared} OK\n" in data["recipients"]
        assert routed(api, namespace, "first", "Routed") is not None

        # The first server goes: the domain moves to the second.
        api.delete(API_VERSION, "PersonalMailServer", namespace, "first")
        wait_for(
            lambda: maps(f"{shared} {ns_b}/second\n", absent=f"{one} "),
            "the shared domain moved to the second server",
            SOON,
        )
        wait_for(lambda: routed(api, ns_b, "second", "Routed"), "second: DomainsRouted", SOON)
        assert "edge maps" in op.log_text()
    finally:
        op.stop()
        api.delete(API_VERSION, "MailPlan", None, plan)


def test_the_chart_lets_the_operator_write_its_edge_maps(cluster: Any) -> None:
    kubeconfig = install_platform(cluster)
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    as_operator = Kube(client, field_manager="vpes-operator")

    def refused(namespace: str, name: str = "vpes-edge-maps") -> str | None:
        """Why the operator may not write that ConfigMap there (None: it may)."""
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {},
        }
        try:
            as_operator.create(body, dry_run=True)
        except ApiError as e:
            # 409: it exists (an operator of another test wrote it), which the store says
            # only after admission let the request through.
            return None if e.status == 409 else f"{e.status} {e.message}"
        return None

    # The policy takes a moment to be loaded after it is applied: once it refuses a
    # system namespace, it is in force.
    wait_for(lambda: refused("kube-system"), "the operator-scope policy in force")
    error = refused(OPERATOR_NAMESPACE)
    if error is not None:
        pytest.fail(f"the operator may not write its edge maps: {error}")
    # Only that one: any other ConfigMap in its own namespace stays refused.
    other = refused(OPERATOR_NAMESPACE, "vpes-operator")
    assert other is not None and "403" in other, other
