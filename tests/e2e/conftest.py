"""End-to-end tests: a real control plane (as in ``tests/integration``) with a real
node: kubelet and kube-proxy on containerd + runc + CNI (a bridge), CoreDNS and
kube-router enforcing NetworkPolicy (``vpes_devcluster.node``). Pods really run,
each in its own network namespace; the host reaches pods and ClusterIPs directly.

One cluster serves this tier (no kwok node: every pod lands on the real one); it is
stopped after the tier's last test (package scope), not left running, with its node,
under the image, integration and unit tiers of a full run.
Set ``VPES_TEST_KUBECONFIG`` to the admin kubeconfig printed by ``vpes-cluster up``
(a cluster started with its node, as ``make cluster`` does) to reuse it. Needs root
and the images (``make images``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from vpes_devcluster import Cluster
from vpes_devcluster.node import build_images
from vpes_operator.clients.kube import Kube

from tests.e2e.support import make_namespace

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reuse = os.environ.get("VPES_TEST_KUBECONFIG")
    if reuse:
        attached = Cluster.from_kubeconfig(Path(reuse))
        if not attached.node:
            pytest.fail(f"{reuse}: that cluster runs no real node (start it with `make cluster`)")
        yield attached
        return
    running = Cluster(tmp_path_factory.mktemp("cluster"), nodes=0, node=True)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="package")
def images(cluster: Cluster) -> dict[str, str]:
    """The tenant, calendar (dav) and backup images, built by ``images/build.sh`` and
    imported into the node's containerd."""
    refs = build_images("tenant", "dav", "backup")
    cluster.real_node().import_images(refs.values())
    return refs


@pytest.fixture(scope="package")
def core(cluster: Cluster) -> Iterator[client.CoreV1Api]:
    api = cluster.api_client()
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Kube:
    """The product's own client (vpes_operator.clients.kube) as admin."""
    return Kube(cluster.api_client(), field_manager="tests")


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace for one test (its ``default`` ServiceAccount exists), deleted
    afterwards (the kubelet then stops its pods)."""
    name = make_namespace(core, f"e-{uuid.uuid4().hex[:10]}")
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
