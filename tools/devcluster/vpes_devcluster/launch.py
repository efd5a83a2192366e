"""One start attempt of the control plane: the processes it spawned (logged and
recorded), waiting for each step to be ready while none of them died, and the checks
that say when the cluster is up."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from vpes_operator.clients.kube import ApiError, Kube

from vpes_devcluster import nodes, pki, procs
from vpes_devcluster.errors import ClusterError
from vpes_devcluster.storage import STORAGE_CLASS


class Launch:
    """Spawns processes (logs in ``logs_dir``, recorded in ``pids_file``, handles in
    ``popens``) and waits for readiness until ``deadline`` (a ``time.monotonic()``)."""

    def __init__(
        self,
        logs_dir: Path,
        pids_file: Path,
        popens: dict[int, subprocess.Popen[bytes]],
        deadline: float,
    ) -> None:
        self.logs_dir = logs_dir
        self.pids_file = pids_file
        self.popens = popens
        self.deadline = deadline
        self.started: list[procs.Proc] = []

    def spawn(self, name: str, argv: list[str], env_extra: dict[str, str] | None = None) -> None:
        env = {**os.environ, **(env_extra or {})}
        env.pop("KUBECONFIG", None)
        proc, popen = procs.spawn(name, argv, self.logs_dir, env)
        self.popens[proc.pid] = popen
        self.started.append(proc)
        procs.save(self.pids_file, self.started)

    def wait(self, what: str, ready: Callable[[], bool]) -> None:
        """Until ``ready()``; ClusterError with the log tails if a started process exits
        or the deadline passes first."""
        while True:
            for proc in self.started:
                popen = self.popens.get(proc.pid)
                if popen is not None and popen.poll() is not None:
                    raise ClusterError(
                        f"{proc.name} exited with code {popen.returncode} while waiting for "
                        f"{what}; last lines of {proc.log}:\n{procs.log_tail(proc)}"
                    )
            if ready():
                return
            if time.monotonic() > self.deadline:
                tails = "\n".join(f"--- {p.log} ---\n{procs.log_tail(p, 15)}" for p in self.started)
                raise ClusterError(f"timed out waiting for {what}\n{tails}")
            time.sleep(0.2)

    def settle(self, kube: Kube, fake_nodes: int) -> None:
        """Create the fake nodes; wait for them, the default ServiceAccount and the
        StorageClass."""
        for index in range(fake_nodes):
            try:
                kube.create(nodes.fake_node(index))
            except ApiError as exc:
                if exc.status != 409:
                    raise
        self.wait("Ready fake nodes", lambda: _nodes_ready(kube, fake_nodes))
        self.wait(
            "the default ServiceAccount",
            lambda: kube.get("v1", "ServiceAccount", "default", "default") is not None,
        )
        self.wait(
            f"StorageClass {STORAGE_CLASS}",
            lambda: kube.get("storage.k8s.io/v1", "StorageClass", None, STORAGE_CLASS) is not None,
        )


def apiserver_ready(server: str, keys: pki.Pki) -> bool:
    """Whether ``server`` answers /readyz with 200 to the admin's certificate."""
    admin = keys.client("admin")
    context = ssl.create_default_context(cafile=str(keys.ca.cert))
    context.load_cert_chain(str(admin.cert), str(admin.key))
    try:
        with urllib.request.urlopen(  # noqa: S310 - our own https URL
            f"{server}/readyz", context=context, timeout=2
        ) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _nodes_ready(kube: Kube, wanted: int) -> bool:
    ready = [n for n in kube.list("v1", "Node", labels="type=kwok") if nodes.is_ready(n)]
    return len(ready) >= wanted
