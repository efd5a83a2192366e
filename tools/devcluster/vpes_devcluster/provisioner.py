"""A tiny dynamic volume provisioner for the dev cluster: hostPath volumes under one
directory, for the default StorageClass ``vpes-local``.

It watches PersistentVolumeClaims of that class and, for each pending one, creates a
PersistentVolume pre-bound to it (claimRef) with the requested capacity; the
controller-manager's PV binder then binds the pair. It deletes the Released volumes it
made (reclaim policy Delete), and stands in for a resizer: when a claim asks for more
than its volume holds, it grows the volume and reports the new capacity on the claim.

Run as ``python -m vpes_devcluster.provisioner --kubeconfig FILE --root DIR``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from vpes_operator.clients.informer import Informer
from vpes_operator.clients.kube import JSON, ApiError, Kube
from vpes_operator.quantity import parse_quantity

from vpes_devcluster.kubeconfig import api_client
from vpes_devcluster.storage import (
    ANN_PROVISIONED_BY,
    PROVISIONER,
    PV_PATH,
    PVC_PATH,
    SC_PATH,
    STORAGE_CLASS,
    persistent_volume,
    requested,
    storage_class,
    volume_name,
)

log = logging.getLogger("vpes_devcluster.provisioner")
MERGE_PATCH = "application/merge-patch+json"


def _key(obj: JSON) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def _is_ours(volume: JSON) -> bool:
    annotations = volume["metadata"].get("annotations") or {}
    return bool(annotations.get(ANN_PROVISIONED_BY) == PROVISIONER)


class _Feed:
    """Adapts one informer to the provisioner's handlers for one kind."""

    def __init__(
        self,
        replace: Callable[[list[JSON]], None],
        event: Callable[[str, JSON], None],
    ) -> None:
        self.replace = replace
        self.event = event


class HostPathProvisioner:
    def __init__(self, kube: Kube, root: Path, workers: int = 8) -> None:
        self.kube = kube
        self.root = root.resolve()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._claims: dict[str, JSON] = {}  # namespace/name -> claim of our class
        self._volumes: dict[str, JSON] = {}  # name -> volume we made
        self._busy: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provision")
        self.informers = [
            Informer(kube, PV_PATH, _Feed(self._replace_volumes, self._on_volume), self.stop),
            Informer(kube, PVC_PATH, _Feed(self._replace_claims, self._on_claim), self.stop),
        ]

    def run(self) -> None:
        """Ensure the StorageClass, then serve until :attr:`stop` is set."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._ensure_storage_class()
        for informer in self.informers:
            informer.start()
        log.info("provisioner %s serving class %s under %s", PROVISIONER, STORAGE_CLASS, self.root)
        self.stop.wait()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _ensure_storage_class(self) -> None:
        while not self.stop.is_set():
            try:
                self.kube.request("POST", SC_PATH, body=storage_class())
                return
            except ApiError as exc:
                if exc.status == 409:
                    return
                log.warning("creating StorageClass %s: %s", STORAGE_CLASS, exc)
            except Exception as exc:
                log.warning("creating StorageClass %s: %s", STORAGE_CLASS, exc)
            self.stop.wait(0.5)

    # -- events -------------------------------------------------------------------------

    def _replace_volumes(self, items: list[JSON]) -> None:
        with self._lock:
            self._volumes = {v["metadata"]["name"]: v for v in items if _is_ours(v)}
        for volume in items:
            self._on_volume("ADDED", volume)

    def _replace_claims(self, items: list[JSON]) -> None:
        with self._lock:
            self._claims = {}
        for claim in items:
            self._on_claim("ADDED", claim)

    def _on_volume(self, kind: str, volume: JSON) -> None:
        if not _is_ours(volume):
            return
        name = volume["metadata"]["name"]
        with self._lock:
            if kind == "DELETED":
                self._volumes.pop(name, None)
                return
            self._volumes[name] = volume
            ref = volume["spec"].get("claimRef") or {}
            claim = self._claims.get(f"{ref.get('namespace', '')}/{ref.get('name', '')}")
        phase = (volume.get("status") or {}).get("phase")
        if phase == "Released" and not volume["metadata"].get("deletionTimestamp"):
            self._submit(f"delete {name}", self._delete, volume)
        elif claim is not None:
            self._check_size(claim, volume)

    def _on_claim(self, kind: str, claim: JSON) -> None:
        spec = claim.get("spec") or {}
        if spec.get("storageClassName") != STORAGE_CLASS:
            return
        key = _key(claim)
        with self._lock:
            if kind == "DELETED":
                self._claims.pop(key, None)
                return
            self._claims[key] = claim
            volume = self._volumes.get(spec.get("volumeName") or volume_name(claim))
        if claim["metadata"].get("deletionTimestamp"):
            return
        phase = (claim.get("status") or {}).get("phase")
        if phase == "Pending" and not spec.get("volumeName") and volume is None:
            self._submit(f"provision {key}", self._provision, claim)
        elif phase == "Bound" and volume is not None:
            self._check_size(claim, volume)

    def _check_size(self, claim: JSON, volume: JSON) -> None:
        want = requested(claim)
        status = claim.get("status") or {}
        have = (status.get("capacity") or {}).get("storage")
        if want is None or have is None or status.get("phase") != "Bound":
            return
        holds = volume["spec"].get("capacity", {}).get("storage", "0")
        want_q = parse_quantity(want)
        if want_q > parse_quantity(have) or want_q > parse_quantity(holds):
            self._submit(f"resize {_key(claim)}", self._resize, claim, volume)

    def _submit(self, key: str, action: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if key in self._busy:
                return
            self._busy.add(key)

        def run() -> None:
            try:
                action(*args)
            except Exception:
                log.exception("%s failed", key)
            finally:
                with self._lock:
                    self._busy.discard(key)

        self._pool.submit(run)

    # -- actions ------------------------------------------------------------------------

    def _provision(self, claim: JSON) -> None:
        volume = persistent_volume(claim, self.root)
        name = volume["metadata"]["name"]
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        # The kubelet applies no fsGroup to hostPath volumes: like Rancher's
        # local-path-provisioner, leave the directory writable by the pod's user.
        directory.chmod(0o777)
        try:
            created = self.kube.request("POST", PV_PATH, body=volume)
        except ApiError as exc:
            if exc.status != 409:
                raise
            return
        with self._lock:
            self._volumes.setdefault(name, created)
        log.info("provisioned %s for %s (%s)", name, _key(claim), requested(claim))

    def _delete(self, volume: JSON) -> None:
        name = volume["metadata"]["name"]
        try:
            self.kube.request("DELETE", f"{PV_PATH}/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
        path = Path((volume["spec"].get("hostPath") or {}).get("path", "")).resolve()
        if path.is_relative_to(self.root) and path != self.root:
            shutil.rmtree(path, ignore_errors=True)
        log.info("deleted released volume %s", name)

    def _resize(self, claim: JSON, volume: JSON) -> None:
        want = requested(claim)
        if want is None:
            return
        name = volume["metadata"]["name"]
        holds = volume["spec"].get("capacity", {}).get("storage", "0")
        if parse_quantity(want) > parse_quantity(holds):
            grow = {"spec": {"capacity": {"storage": want}}}
            self.kube.request("PATCH", f"{PV_PATH}/{name}", body=grow, content_type=MERGE_PATCH)
        meta = claim["metadata"]
        status = {
            "capacity": {"storage": want},
            "allocatedResources": {"storage": want},
            "allocatedResourceStatuses": None,
            "conditions": None,
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/persistentvolumeclaims/{meta['name']}"
        self.kube.request(
            "PATCH", f"{path}/status", body={"status": status}, content_type=MERGE_PATCH
        )
        log.info("resized %s (%s) to %s", name, _key(claim), want)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vpes_devcluster.provisioner")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True, help="directory of the volumes")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    provisioner = HostPathProvisioner(
        Kube(api_client(args.kubeconfig, pool_size=args.workers + 4), PROVISIONER),
        args.root,
        args.workers,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        provisioner.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    provisioner.run()


if __name__ == "__main__":
    main()
