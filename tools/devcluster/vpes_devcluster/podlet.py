"""The podlet: a small node agent of the dev cluster that really runs pods, with podman.

It is NOT a kubelet, and it stands in for one only in tests (a real kubelet is a later
step). It registers a Node ``podlet-<n>`` (labels ``type: podlet``,
``kubernetes.io/hostname``, ``kubernetes.io/os``; no kwok annotation, so kwok leaves it
alone), keeps it Ready (status heartbeat and a Lease in kube-node-lease), watches the
pods bound to it (field selector ``spec.nodeName``) and for each one:

- makes its volumes (configMap, secret, projected with ServiceAccount tokens,
  downwardAPI, persistentVolumeClaim via the bound PV's hostPath, emptyDir, hostPath:
  see :mod:`vpes_devcluster.podlet_volumes`), and re-resolves the configMap and secret
  ones every ``refresh_interval`` seconds, swapping ``..data`` when they changed;
- resolves each container's environment (:mod:`vpes_devcluster.podlet_env`) and runs it
  with ``podman run -d --pull=never --network host`` (:mod:`vpes_devcluster.podlet_container`);
- reports the pod's status (phase, podIP/hostIP 127.0.0.1, container states, the
  termination message, conditions), restarts containers per ``restartPolicy``, runs
  tcpSocket/httpGet/exec probes (:mod:`vpes_devcluster.podlet_pod`);
- at deletion stops the containers (``podman stop -t <grace>``), removes them and the
  pod's directories, and deletes the pod object with gracePeriodSeconds 0.

Every pod shares the host network: two pods that bind the same port on one podlet (or
on two podlets of one machine) conflict. Pods reach the API server on 127.0.0.1
(``KUBERNETES_SERVICE_HOST``). There is no Service network, no cluster DNS, no
``kubectl logs``/``exec`` (use ``podman logs``/``exec``), no image pulls (images must
exist locally). Containers carry the labels ``vpes.io/podlet=<node>`` and
``vpes.io/podlet-instance=<id>`` (a hash of node name and state directory, see
:mod:`vpes_devcluster.podlet_podman`): ``stop()`` removes all of them, and ``start()``
first removes what an earlier podlet of the same node and state directory left behind,
never the containers of another cluster's podlet.

In a test: ``Podlet(rest, "podlet-0", state_dir).start()`` ... ``stop()`` (or ``with``);
as a cluster component: ``Cluster.start_podlet()``, which runs
``python -m vpes_devcluster.podlet --kubeconfig F --state DIR --node NAME``.
Needs root (rootful podman) and, on these machines, ``CONTAINERS_CONF`` pointing at
``images/containers.conf`` (the default when unset).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from vpes_devcluster.informer import Informer
from vpes_devcluster.kube import ApiError, Obj, Rest, api_client
from vpes_devcluster.podlet_node import (
    heartbeat,
    is_schedulable,
    node_object,
    register,
    renew_lease,
)
from vpes_devcluster.podlet_pod import Context, PodWorker
from vpes_devcluster.podlet_podman import Podman, Poller, instance_id, now
from vpes_devcluster.podlet_volumes import leftover_mounts
from vpes_devcluster.wait import wait_for

__all__ = ["Podlet", "main"]

log = logging.getLogger("vpes_devcluster.podlet")


class _ScopedRest(Rest):
    """A :class:`Rest` that adds fixed query parameters (a field selector) to every
    call, so the shared :class:`Informer` lists and watches only this node's pods."""

    def __init__(self, rest: Rest, **query: str) -> None:
        super().__init__(rest.api)
        self.extra = query

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = 30.0,
    ) -> Any:
        merged = {**self.extra, **(query or {})}
        return super()._call(method, path, body, merged, content_type, timeout)


def _api_address(rest: Rest) -> tuple[str, int]:
    url = urllib.parse.urlsplit(str(rest.api.configuration.host))
    return url.hostname or "127.0.0.1", url.port or 443


class Podlet:
    """A node agent that runs the pods bound to Node ``node_name`` with podman; its
    pods' directories live in ``state_dir/pods``. Not a kubelet: see the module doc."""

    def __init__(
        self,
        rest: Rest,
        node_name: str,
        state_dir: Path,
        *,
        labels: Mapping[str, str] | None = None,
        taints: Sequence[Obj] = (),
        podman: Podman | None = None,
        poll_interval: float = 1.0,
        refresh_interval: float = 2.0,
        heartbeat_interval: float = 10.0,
    ) -> None:
        self.rest = rest
        self.node_name = node_name
        self.state_dir = state_dir.resolve()
        self.labels = dict(labels or {})
        self.taints = list(taints)
        self.podman = podman or Podman()
        self.heartbeat_interval = heartbeat_interval
        self.stopping = threading.Event()
        self.instance = instance_id(node_name, self.state_dir)
        self.poller = Poller(self.podman, self.instance, poll_interval, self.stopping)
        self.ctx = Context(
            rest=rest,
            podman=self.podman,
            poller=self.poller,
            node=node_name,
            instance=self.instance,
            pods_dir=self.state_dir / "pods",
            api=_api_address(rest),
            stop=self.stopping,
            tick=poll_interval,
            refresh=refresh_interval,
        )
        self._workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        self._since = now()
        self._runtime = "podman://unknown"
        self._node_uid = ""

    # -- lifecycle ----------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Remove leftovers of an earlier podlet of this node, register the Node, start
        serving, and return once the Node is Ready and schedulable."""
        self._remove_leftovers()
        self._runtime = f"podman://{self._podman_version()}"
        node = node_object(self.node_name, self.labels, self.taints, self._since, self._runtime)
        self._node_uid = register(self.rest, node)
        renew_lease(self.rest, self.node_name, self._node_uid)
        pods = _ScopedRest(self.rest, fieldSelector=f"spec.nodeName={self.node_name}")
        informer = Informer(pods, "/api/v1/pods", self, self.stopping)
        beat = threading.Thread(target=self._beat, name=f"podlet {self.node_name} heartbeat")
        beat.daemon = True
        self.poller.start()
        informer.start()
        beat.start()
        wait_for(lambda: informer.synced.is_set(), timeout, f"the pods of {self.node_name}")
        wait_for(self.schedulable, timeout, f"node {self.node_name} Ready and untainted", 0.5)
        log.info("podlet %s serving (state in %s)", self.node_name, self.state_dir)

    def stop(self) -> None:
        """Stop serving; stop and remove every container this podlet started (the pod
        objects are left as they are, as when a kubelet stops)."""
        self.stopping.set()
        with self._lock:
            workers = list(self._workers.values())
        deadline = time.monotonic() + 2.0
        for worker in workers:
            worker.wake.set()
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.podman.remove(self.podman.of_instance(self.instance), grace=1)
        for worker in workers:
            worker.cleanup()
        self._remove_dirs()
        log.info("podlet %s stopped", self.node_name)

    def schedulable(self) -> bool:
        """The Node is Ready and the lifecycle controller has lifted its not-ready taint."""
        return is_schedulable(self.rest, self.node_name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the informer's handler ---------------------------------------------------------

    def replace(self, items: list[Obj]) -> None:
        uids = {str(pod["metadata"]["uid"]) for pod in items}
        for pod in items:
            self.event("ADDED", pod)
        with self._lock:
            vanished = [w for uid, w in self._workers.items() if uid not in uids]
        for worker in vanished:
            worker.terminate(0, gone=True)

    def event(self, kind: str, obj: Obj) -> None:
        uid = str(obj["metadata"]["uid"])
        with self._lock:
            worker = self._workers.get(uid)
            if worker is None and kind != "DELETED" and not self.stopping.is_set():
                worker = PodWorker(self.ctx, obj, self._forget)
                self._workers[uid] = worker
                worker.start()
                return
        if worker is None:
            return
        if kind == "DELETED":
            worker.terminate(0, gone=True)
        else:
            worker.update(obj)

    def _forget(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)

    # -- internals ----------------------------------------------------------------------

    def _beat(self) -> None:
        while not self.stopping.wait(self.heartbeat_interval):
            try:
                renew_lease(self.rest, self.node_name, self._node_uid)
                heartbeat(self.rest, self.node_name, self._since, self._runtime)
            except ApiError as exc:
                if exc.status == 404:
                    node = node_object(
                        self.node_name, self.labels, self.taints, self._since, self._runtime
                    )
                    self._node_uid = register(self.rest, node)
                else:
                    log.warning("heartbeat of %s: %s", self.node_name, exc)
            except Exception as exc:
                log.warning("heartbeat of %s: %s", self.node_name, exc)

    def _podman_version(self) -> str:
        proc = subprocess.run(
            [self.podman.binary, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            env=self.podman.env,
            check=False,
        )
        return proc.stdout.strip() or "unknown"

    def _remove_leftovers(self) -> None:
        leftovers = self.podman.of_instance(self.instance)
        if leftovers:
            log.info("removing %d container(s) left by an earlier podlet", len(leftovers))
            self.podman.remove(leftovers, grace=0)
        self._remove_dirs()

    def _remove_dirs(self) -> None:
        pods = self.ctx.pods_dir
        for mount in sorted(leftover_mounts(pods), key=lambda p: len(p.parts), reverse=True):
            subprocess.run(["umount", "--lazy", str(mount)], capture_output=True, check=False)
        shutil.rmtree(pods, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vpes_devcluster.podlet",
        description="Run a dev-cluster node whose pods really run under podman "
        "(a stand-in for a kubelet, for tests).",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state", type=Path, required=True, help="directory of the pods' files")
    parser.add_argument("--node", required=True, help="the Node's name, e.g. podlet-0")
    parser.add_argument("--refresh", type=float, default=2.0, help="configMap/secret refresh (s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    podlet = Podlet(
        Rest(api_client(args.kubeconfig, pool_size=32)),
        args.node,
        args.state,
        refresh_interval=args.refresh,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    podlet.start()
    while not done.wait(1.0):
        pass
    podlet.stop()


if __name__ == "__main__":
    main()
