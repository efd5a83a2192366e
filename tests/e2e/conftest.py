"""End-to-end tests: a real control plane (as in ``tests/integration``) whose pods
really run, on a podlet (``vpes_devcluster.podlet``: a node agent that runs the pods
bound to it with podman, a stand-in for a kubelet) beside one kwok node.

One cluster and one in-process podlet (Node ``podlet-0``, label ``type: podlet``, no
taint) serve the session; pods choose it with a nodeSelector (a pod without one may
land on the kwok node and only pretend to run). Set ``VPES_TEST_KUBECONFIG``
to the admin kubeconfig printed by ``vpes-cluster up`` to reuse a running cluster (the
podlet still runs in this process). Needs root, podman and the base image
(``make images``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from vpes_devcluster import ApiError, Cluster, Rest, wait_for
from vpes_devcluster.podlet import Podlet
from vpes_devcluster.podlet_podman import default_env

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        check=check,
        capture_output=True,
        text=True,
        timeout=120,
        env=default_env(),
    )


@pytest.fixture(scope="session")
def base_image() -> str:
    """The newest ``localhost/vpes-base:<tag>`` (built by ``make images``)."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make system-deps`")
    out = podman(
        "images",
        "--filter",
        "reference=localhost/vpes-base",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    )
    found = [line for line in out.stdout.split() if not line.endswith(":<none>")]
    if not found:
        pytest.fail("no localhost/vpes-base image: run `make images`")
    return found[0]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reuse = os.environ.get("VPES_TEST_KUBECONFIG")
    if reuse:
        yield Cluster.from_kubeconfig(Path(reuse))
        return
    running = Cluster(tmp_path_factory.mktemp("cluster"), nodes=1)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def admin(cluster: Cluster) -> Iterator[Rest]:
    """Plain JSON calls as admin (system:masters), for the whole session."""
    rest = cluster.rest()
    try:
        yield rest
    finally:
        rest.api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def podlet(
    cluster: Cluster, admin: Rest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Podlet]:
    """A podlet in this process; its Node is deleted at the end of the session."""
    name = f"podlet-e2e-{os.getpid()}" if os.environ.get("VPES_TEST_KUBECONFIG") else "podlet-0"
    running = Podlet(admin, name, tmp_path_factory.mktemp("podlet"))
    running.start()
    try:
        yield running
    finally:
        running.stop()
        try:
            admin.delete(f"/api/v1/nodes/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise


@pytest.fixture
def rest(admin: Rest) -> Rest:
    return admin


@pytest.fixture
def namespace(rest: Rest) -> Iterator[str]:
    """A fresh namespace for one test (its ``default`` ServiceAccount exists), deleted
    afterwards (the podlet then stops and removes its pods)."""
    name = f"e-{uuid.uuid4().hex[:10]}"
    rest.create("/api/v1/namespaces", {"metadata": {"name": name}})

    def has_default_sa() -> bool:
        try:
            rest.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    try:
        wait_for(has_default_sa, 30, f"the default ServiceAccount of {name}")
        yield name
    finally:
        try:
            rest.delete(f"/api/v1/namespaces/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
