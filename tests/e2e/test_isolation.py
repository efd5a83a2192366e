"""Two customers side by side on the real node, and their isolation, enforced.

Each customer has its own namespace, plan and domain. Mail goes in through each
server's own Service ClusterIP and comes out over IMAP; neither sees the other's.
From inside tenant A's pod, every mail port of tenant B (pod IP and Service), the
API server's ClusterIP and a metadata address (169.254.169.254, served here by a
listener on the host) are unreachable while the NetworkPolicies exist, and reachable
once they are removed (so this test can fail). Pods with the edge's labels in the
operator's namespace reach every mail port (the tenant trusts the client addresses
they forward) and not the calendar port, vpes-web's only the calendar port (its
plan sells calendars), the operator's only the storage usage report and the plain SMTP
and IMAP ports its fleet upgrades' health gate reads the greetings on.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from vpes_devcluster import Cluster
from vpes_devcluster.node_config import BRIDGE
from vpes_devcluster.platform import OPERATOR_NAMESPACE
from vpes_operator import API_VERSION, naming
from vpes_operator.builders.dav import DAV_PORT
from vpes_operator.builders.network import EDGE_ROLE_LABEL
from vpes_operator.clients.kube import Kube
from vpes_operator.render.layout import PORTS, USAGE_PORT
from vpes_operator.settings import OperatorSettings

from tests.e2e import support
from tests.integration.operator_support import OperatorProcess, wait_for, wait_ready

METADATA_IP = "169.254.169.254"
API_CLUSTER_IP = "10.96.0.1"


@dataclass(frozen=True)
class Tenant:
    ns: str
    name: str
    address: str
    service_ip: str


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    yield from support.start_operator(
        cluster,
        images["tenant"],
        tmp_path_factory.mktemp("operator-isolation"),
        VPES_DAV_IMAGE=images["dav"],
    )


@pytest.fixture(scope="module")
def tenants(
    api: Kube, core: client.CoreV1Api, operator: OperatorProcess
) -> Iterator[tuple[Tenant, Tenant]]:
    made: list[Tenant] = []
    plans = []
    try:
        for who, domain in (("alice", "alice.example"), ("bob", "bob.example")):
            ns = support.make_namespace(core, f"customer-{who}-{uuid.uuid4().hex[:6]}")
            plan = support.small_plan(api, features={"calendar": True})
            plans.append(plan)
            address = support.create_server(api, ns, who, plan, domain)
            made.append(Tenant(ns, who, address, ""))
        ready = []
        for t in made:
            wait_ready(api, t.ns, t.name, timeout=240)
            ready.append(Tenant(t.ns, t.name, t.address, support.service_ip(api, t.ns, t.name)))
        yield ready[0], ready[1]
    finally:
        for t in made:
            core.delete_namespace(t.ns)
        for plan in plans:
            api.delete(API_VERSION, "MailPlan", None, plan)


@pytest.fixture(scope="module")
def metadata_listener() -> Iterator[str]:
    """A TCP listener on 169.254.169.254:80 on the host, where a cloud's metadata
    service would be (added to the node's bridge for this module)."""
    subprocess.run(["ip", "addr", "add", f"{METADATA_IP}/32", "dev", BRIDGE], check=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((METADATA_IP, 80))
    sock.listen(64)
    sock.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield METADATA_IP
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
        subprocess.run(["ip", "addr", "del", f"{METADATA_IP}/32", "dev", BRIDGE], check=False)


def test_two_customers_each_receive_and_read_only_their_own_mail(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alice, bob = tenants
    support.send(alice.service_ip, "carol@alice.example", alice.address, "for alice")
    support.send(bob.service_ip, "carol@bob.example", bob.address, "for bob")
    support.wait_subjects(alice.service_ip, alice.address, ["for alice"])
    support.wait_subjects(bob.service_ip, bob.address, ["for bob"])
    # Alice's server knows nothing of Bob's domain: it refuses his mail at the door.
    with pytest.raises(Exception, match=r"Recipient address rejected|Relay access denied"):
        support.send(alice.service_ip, "carol@bob.example", bob.address, "wrong door")
    assert support.subjects(bob.service_ip, bob.address) == ["for bob"]


def _targets(bob_pod_ip: str, bob_service_ip: str, metadata: str) -> set[tuple[str, int]]:
    mail = {(ip, p) for ip in (bob_pod_ip, bob_service_ip) for p in [*_ports(), DAV_PORT]}
    usage = (bob_pod_ip, USAGE_PORT)  # the storage report: the operator's alone
    return mail | {usage, (API_CLUSTER_IP, 443), (metadata, 80)}


def _ports() -> list[int]:
    return [p.port for p in PORTS]


def _probe_pod(api: Kube, labels: dict[str, str], image: str) -> dict[str, Any]:
    name = f"probe-{uuid.uuid4().hex[:6]}"
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE, "labels": labels},
            "spec": {
                "terminationGracePeriodSeconds": 0,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65534,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "probe",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": ["sleep", "infinity"],
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                    }
                ],
            },
        }
    )

    def running() -> dict[str, Any] | None:
        pod = api.get("v1", "Pod", OPERATOR_NAMESPACE, name)
        return pod if ((pod or {}).get("status") or {}).get("phase") == "Running" else None

    return wait_for(running, f"probe pod {name} Running", timeout=120)


def test_policy_isolates_tenants_and_admits_only_edge_and_operator(
    cluster: Cluster,
    api: Kube,
    operator: OperatorProcess,
    tenants: tuple[Tenant, Tenant],
    metadata_listener: str,
    images: dict[str, str],
) -> None:
    alice, bob = tenants
    a_pod = support.tenant_pod(api, alice.ns, alice.name)["metadata"]["name"]
    b_pod_ip = support.tenant_pod(api, bob.ns, bob.name)["status"]["podIP"]
    targets = _targets(b_pod_ip, bob.service_ip, metadata_listener)

    assert support.open_ports(cluster, alice.ns, a_pod, targets) == set()

    # The edge (by its labels, in the operator's namespace) reaches the mail ports, the
    # operator the usage report and the health gate's SMTP (25) and IMAP (143).
    settings = OperatorSettings()
    a_pod_ip = support.tenant_pod(api, alice.ns, alice.name)["status"]["podIP"]
    mail_a = {(a_pod_ip, p) for p in _ports()}
    usage_a = {(a_pod_ip, USAGE_PORT)}
    dav_a = {(a_pod_ip, DAV_PORT)}
    for labels, admitted in (
        ({**settings.edge_pod_labels, EDGE_ROLE_LABEL: "mx"}, mail_a),  # not the usage report
        ({**settings.edge_pod_labels, EDGE_ROLE_LABEL: "relay"}, set()),  # forwards no client
        # no PROXY port (it could forge addresses there), only the greetings' two
        (settings.operator_pod_labels, usage_a | {(a_pod_ip, 25), (a_pod_ip, 143)}),
        (settings.web_pod_labels, dav_a),  # vpes-web's calendar proxy: that port alone
    ):
        probe = _probe_pod(api, dict(labels), images["tenant"])
        name = probe["metadata"]["name"]
        try:
            opened = support.open_ports(cluster, OPERATOR_NAMESPACE, name, mail_a | usage_a | dav_a)
            assert opened == admitted
        finally:
            api.delete("v1", "Pod", OPERATOR_NAMESPACE, name)

    # Without the policies (and with the operator stopped, so that it does not put
    # them back), the very same connections go through.
    operator.stop()
    try:
        for t in tenants:
            api.delete("networking.k8s.io/v1", "NetworkPolicy", t.ns, naming.network_policy(t.name))
        opened = wait_for(
            lambda: (o := support.open_ports(cluster, alice.ns, a_pod, targets)) == targets and o,
            "every connection open without the NetworkPolicies",
            timeout=60,
        )
        assert opened == targets
    finally:
        operator.start()

    def restored() -> bool:
        return all(
            api.get("networking.k8s.io/v1", "NetworkPolicy", t.ns, naming.network_policy(t.name))
            for t in tenants
        )

    wait_for(restored, "the operator to put the NetworkPolicies back", timeout=120)
    wait_for(
        lambda: not support.open_ports(cluster, alice.ns, a_pod, targets),
        "every connection refused again",
        timeout=60,
    )
