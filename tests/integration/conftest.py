"""Integration tests run against a real control plane (etcd, kube-apiserver with RBAC,
kube-controller-manager, kube-scheduler, kwok nodes, the hostPath provisioner).

One cluster serves this tier; it is stopped after the tier's last test (package
scope), not left running under the unit tier of a full run. Set
``VPES_TEST_KUBECONFIG`` to the admin kubeconfig printed by ``vpes-cluster up`` to
reuse a running cluster instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from vpes_devcluster import Cluster, wait_for
from vpes_operator.clients.kube import Kube

from . import helm_template
from .acme_support import PebbleServer
from .dns_support import KnotServer

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reuse = os.environ.get("VPES_TEST_KUBECONFIG")
    if reuse:
        yield Cluster.from_kubeconfig(Path(reuse))
        return
    running = Cluster(tmp_path_factory.mktemp("cluster"), nodes=2)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
def kube(cluster: Cluster) -> Iterator[client.ApiClient]:
    """A ``kubernetes.client.ApiClient`` with the admin kubeconfig (system:masters)."""
    api = cluster.api_client()
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Kube:
    """The product's own client (vpes_operator.clients.kube) as admin."""
    return Kube(cluster.api_client(), field_manager="tests")


@pytest.fixture
def namespace(api: Kube) -> Iterator[str]:
    """A fresh namespace for one test (its ``default`` ServiceAccount exists, so pods
    can be created at once); the values of its Secrets are remembered for the log check
    (`no_secret_in_any_operator_log`), then it is deleted."""
    from .operator_support import harvest_secrets

    name = f"t-{uuid.uuid4().hex[:10]}"
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        wait_for(
            lambda: api.get("v1", "ServiceAccount", name, "default") is not None,
            30,
            f"the default ServiceAccount of {name}",
        )
        yield name
    finally:
        harvest_secrets(api, name)
        api.delete("v1", "Namespace", None, name)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_operator_log() -> Iterator[None]:
    """After the whole run: no operator log line holds a secret the run created.

    The tests record every Secret value of their namespaces before deleting
    them (passwords set by users, generated passwords, password hashes, DKIM
    and TLS keys); every operator log of the session is searched for them.
    """
    from .operator_support import OPERATOR_LOG_DIRS, SECRET_VALUES, leaked_secrets

    yield
    if OPERATOR_LOG_DIRS and not SECRET_VALUES:
        pytest.fail("operator logs but no secrets recorded: the log check would prove nothing")
    leaks = leaked_secrets()
    if leaks:
        pytest.fail(f"secrets found in operator logs: {leaks}")


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary, for the tests that render the chart (helm_template.py)."""
    return helm_template.helm_binary()


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    """The tests' Knot DNS server (RFC 2136 + TSIG), for one module."""
    server = KnotServer(tmp_path_factory.mktemp("knot"))
    server.start()
    from .operator_support import SECRET_VALUES

    SECRET_VALUES.add(server.secret)  # the TSIG secret never appears in an operator log
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pebble(knot: KnotServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PebbleServer]:
    """A real ACME CA (Pebble) validating DNS-01 at `knot`, for one module."""
    server = PebbleServer(tmp_path_factory.mktemp("pebble"), knot.address)
    server.start()
    yield server
    server.stop()
