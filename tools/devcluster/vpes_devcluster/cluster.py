"""One local control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok and the hostPath provisioner, all on random ports; with
``node=True`` also a real node (:mod:`vpes_devcluster.node`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Self

from kubernetes import client
from vpes_operator.clients.kube import Kube

from vpes_devcluster import binaries, components, kubeconfig, pki, procs
from vpes_devcluster.errors import ClusterError
from vpes_devcluster.launch import Launch, apiserver_ready
from vpes_devcluster.node import Node

__all__ = ["Cluster", "ClusterError"]

# Everything start() writes inside the state directory, and so what it may remove.
OWNED = (
    "etcd",
    "pki",
    "kubeconfig",
    "config",
    "logs",
    "volumes",
    "apiserver-certs",
    "kwok-home",
    "flexvolume",
    "kubectl-cache",
    "node",
)
PORT_ATTEMPTS = 3
CLIENT_COMPONENTS = (
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "provisioner",
    "kubelet",
    "kube-proxy",
    "kube-router",
)
NODE_SECONDS = 600.0  # first run: builds the pause and CoreDNS images, imports them
FIELD_MANAGER = "vpes-devcluster"


class Cluster:
    """A local Kubernetes control plane whose state (data, certificates, logs, volumes)
    lives in ``state_dir``. ``start()`` brings it up with ``nodes`` fake nodes and
    returns once they are Ready; ``stop()`` ends every process ``start()`` started.
    With ``node``, a real node (kubelet on containerd) runs pods for real.

    A cluster started by another process (``vpes-cluster up``) is attached to with
    ``Cluster(state_dir)``: ``server``, ``kubeconfig`` and ``stop()`` then work on it.
    """

    def __init__(
        self, state_dir: Path, nodes: int = 2, bin_dir: Path | None = None, node: bool = False
    ) -> None:
        if not (0 if node else 1) <= nodes <= 100:
            raise ValueError(f"nodes must be between 1 and 100, not {nodes}")
        self.state_dir = state_dir.resolve()
        self.nodes = nodes
        self.node = node
        self._bin_dir = bin_dir
        self._server: str | None = None
        self._popens: dict[int, subprocess.Popen[bytes]] = {}
        self._load_info()

    @classmethod
    def from_kubeconfig(cls, kubeconfig_path: Path) -> Cluster:
        """The running cluster whose admin kubeconfig is ``kubeconfig_path`` (as printed
        by ``vpes-cluster up``); its processes are left alone unless ``stop()`` is called."""
        state_dir = kubeconfig_path.resolve().parent.parent
        if not (state_dir / "cluster.json").is_file():
            raise ClusterError(
                f"{kubeconfig_path} is not the admin kubeconfig of a vpes dev cluster "
                f"(no {state_dir / 'cluster.json'})"
            )
        return cls(state_dir)

    # -- paths and facts ----------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        """Directory of etcd, kube-*, kubectl, kwok and helm (built on first use)."""
        if self._bin_dir is None:
            self._bin_dir = binaries.bin_dir()
        return self._bin_dir

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (group system:masters)."""
        return self.state_dir / "kubeconfig" / "admin.yaml"

    @property
    def server(self) -> str:
        """The API server's URL, e.g. ``https://127.0.0.1:41235``."""
        if self._server is None:
            raise ClusterError(f"the cluster in {self.state_dir} has not been started")
        return self._server

    @property
    def ca_file(self) -> Path:
        return pki.Pki(self.state_dir / "pki").ca.cert

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "pids.json"

    @property
    def info_file(self) -> Path:
        return self.state_dir / "cluster.json"

    def processes(self) -> list[procs.Proc]:
        """The processes recorded by ``start()``, alive or not."""
        return procs.load(self.pids_file)

    def running(self) -> list[procs.Proc]:
        """The recorded processes still running their recorded command line."""
        return [p for p in self.processes() if procs.is_ours(p)]

    def _load_info(self) -> None:
        if not self.info_file.exists():
            return
        info = json.loads(self.info_file.read_text())
        self._server = str(info["server"])
        self.node = bool(info.get("node", self.node))
        if self._bin_dir is None and info.get("bin_dir"):
            self._bin_dir = Path(info["bin_dir"])

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> None:
        """Start everything and wait until the nodes are Ready and the ``default``
        ServiceAccount exists. On failure, stops what it started and raises
        :class:`ClusterError` with the relevant log tail."""
        if self.running():
            raise ClusterError(f"a cluster already runs from {self.state_dir}; stop it first")
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._start_once(timeout)
                return
            except ClusterError as exc:
                # A free port picked here can be taken by someone else before we bind it.
                if "address already in use" not in str(exc) or attempt == PORT_ATTEMPTS:
                    raise

    def _start_once(self, timeout: float) -> None:
        bin_dir = self.bin_dir
        deadline = time.monotonic() + timeout + (NODE_SECONDS if self.node else 0)
        self._clean()
        if self.node:
            Node.prepare_host()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        keys = pki.create(self.state_dir / "pki")
        lay = components.Layout(
            state=self.state_dir,
            bin_dir=bin_dir,
            pki=keys,
            etcd_client_port=procs.free_port(),
            etcd_peer_port=procs.free_port(),
            apiserver_port=procs.free_port(),
            node=self.node,
        )
        self._server = lay.server
        self._write_kubeconfigs(lay, keys)
        self.info_file.write_text(
            json.dumps(
                {
                    "server": lay.server,
                    "bin_dir": str(bin_dir),
                    "kubeconfig": str(self.kubeconfig),
                    "nodes": self.nodes,
                    "node": self.node,
                },
                indent=2,
            )
            + "\n"
        )
        launch = Launch(self.logs_dir, self.pids_file, self._popens, deadline)
        try:
            launch.spawn("etcd", components.etcd(lay))
            launch.spawn("kube-apiserver", components.kube_apiserver(lay))
            launch.wait("kube-apiserver /readyz", lambda: apiserver_ready(lay.server, keys))
            launch.spawn("kube-controller-manager", components.kube_controller_manager(lay))
            launch.spawn("kube-scheduler", components.kube_scheduler(lay))
            kwok_home = self.state_dir / "kwok-home"  # keeps kwok off ~/.kwok/kwok.yaml
            kwok_home.mkdir(exist_ok=True)
            launch.spawn("kwok", components.kwok(lay), {"HOME": str(kwok_home)})
            launch.spawn("provisioner", components.provisioner(lay), components.python_env())
            api = self.api_client()
            try:
                launch.settle(Kube(api, FIELD_MANAGER), self.nodes)
            finally:
                api.close()  # type: ignore[no-untyped-call]
            if self.node:
                self.real_node().start(launch.spawn, launch.wait, self.kubectl)
        except BaseException:
            self.stop(remove=False)
            raise

    def stop(self, remove: bool = False) -> None:
        """Stop every recorded process, newest first (SIGTERM, then SIGKILL), with its
        children. With ``remove``, delete the state directory afterwards."""
        recorded = self.processes()
        node = self.real_node() if self.node else None
        if node is not None and recorded:
            # Nothing may recreate or reschedule pods while the node drains.
            controllers = [
                p for p in recorded if p.name in ("kube-controller-manager", "kube-scheduler")
            ]
            procs.stop(controllers, popens=self._popens)
            node.drain(self.kubectl)
        procs.stop(reversed(recorded), popens=self._popens)
        self._popens.clear()
        if node is not None:
            node.cleanup()
        if remove:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        elif self.pids_file.exists():
            self.pids_file.unlink()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def real_node(self) -> Node:
        """The real node's handle (its processes are this cluster's)."""
        keys = pki.Pki(self.state_dir / "pki")
        return Node(
            self.state_dir / "node", self.bin_dir, keys.ca.cert, self.state_dir / "kubeconfig"
        )

    # -- using it -----------------------------------------------------------------------

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster as admin; output captured as text. With
        ``check``, a non-zero exit raises :class:`ClusterError` showing stderr."""
        argv = [
            str(self.bin_dir / "kubectl"),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.state_dir / 'kubectl-cache'}",
            *args,
        ]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def api_client(self) -> client.ApiClient:
        """A ``kubernetes.client.ApiClient`` for the admin kubeconfig."""
        return kubeconfig.api_client(self.kubeconfig)

    def token_for(
        self,
        namespace: str,
        service_account: str,
        duration: timedelta | int = timedelta(hours=1),
    ) -> str:
        """A bound token of ``namespace/service_account`` (TokenRequest API), valid for
        ``duration`` (timedelta or seconds; the API server's minimum is 10 minutes)."""
        seconds = int(duration.total_seconds()) if isinstance(duration, timedelta) else duration
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"audiences": [components.ISSUER], "expirationSeconds": seconds},
        }
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
        api = self.api_client()
        try:
            answer = Kube(api, FIELD_MANAGER).request("POST", path, body=body)
        finally:
            api.close()  # type: ignore[no-untyped-call]
        return str(answer["status"]["token"])

    def write_kubeconfig_for_token(self, token: str, path: Path) -> Path:
        """Write a kubeconfig for this cluster that authenticates with ``token``."""
        return kubeconfig.write_for_token(path, self.server, self.ca_file, token, "token-user")

    # -- internals ----------------------------------------------------------------------

    def _clean(self) -> None:
        for name in OWNED:
            shutil.rmtree(self.state_dir / name, ignore_errors=True)
        for leftover in (self.pids_file, self.info_file):
            leftover.unlink(missing_ok=True)

    def _write_kubeconfigs(self, lay: components.Layout, keys: pki.Pki) -> None:
        admin = keys.client("admin")
        kubeconfig.write_for_cert(
            self.kubeconfig, lay.server, keys.ca.cert, admin.cert, admin.key, "admin"
        )
        for who in CLIENT_COMPONENTS:
            pair = keys.client(who)
            kubeconfig.write_for_cert(
                lay.kubeconfig(who), lay.server, keys.ca.cert, pair.cert, pair.key, who
            )
