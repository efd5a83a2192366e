"""Leader election with a coordination.k8s.io Lease: one replica reconciles at a time.

Every replica runs `elect()` until it holds the Lease, then renews it. A leader
that cannot renew before its lease would expire stops reconciling at once (the
process exits and its pod restarts as a candidate), so two replicas never
reconcile together: the others take over only after the lease has expired.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .clients.kube import ApiError, Kube

log = logging.getLogger(__name__)
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    duration: float = 15.0  # seconds a lease is valid without renewal
    renew_every: float = 5.0
    retry_every: float = 2.0


def _micro(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(ts: str | None) -> dt.datetime | None:
    if not ts:
        return None
    return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def may_take(spec: dict[str, Any], identity: str, now: dt.datetime) -> bool:
    """Whether `identity` may hold the lease described by `spec` now."""
    holder = spec.get("holderIdentity")
    if not holder or holder == identity:
        return True
    renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    duration = float(spec.get("leaseDurationSeconds") or 0)
    return renewed is None or now > renewed + dt.timedelta(seconds=duration)


def claimed(spec: dict[str, Any], cfg: LeaseConfig, now: dt.datetime) -> dict[str, Any]:
    """The lease spec after `cfg.identity` takes or renews it."""
    out = dict(spec)
    if spec.get("holderIdentity") != cfg.identity:
        out["acquireTime"] = _micro(now)
        out["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
            1 if spec.get("holderIdentity") else 0
        )
    out["holderIdentity"] = cfg.identity
    out["leaseDurationSeconds"] = int(cfg.duration)
    out["renewTime"] = _micro(now)
    return out


class Elector:
    def __init__(self, kube: Kube, cfg: LeaseConfig) -> None:
        self.kube = kube
        self.cfg = cfg
        self.path = LEASE_PATH.format(namespace=cfg.namespace)

    def try_acquire(self) -> bool:
        """One attempt to take or renew the lease (compare-and-swap on resourceVersion)."""
        now = dt.datetime.now(dt.UTC)
        try:
            lease = self.kube.request("GET", f"{self.path}/{self.cfg.name}")
        except ApiError as e:
            if e.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.cfg.name, "namespace": self.cfg.namespace},
                "spec": claimed({}, self.cfg, now),
            }
            try:
                self.kube.request("POST", self.path, body=body)
                return True
            except ApiError as e2:
                if e2.status == 409:
                    return False
                raise
        spec = lease.get("spec") or {}
        if not may_take(spec, self.cfg.identity, now):
            return False
        lease["spec"] = claimed(spec, self.cfg, now)
        try:
            self.kube.request("PUT", f"{self.path}/{self.cfg.name}", body=lease)
            return True
        except ApiError as e:
            if e.status == 409:
                return False
            raise

    def wait_for_leadership(self, stop: threading.Event) -> bool:
        logged = False
        while not stop.is_set():
            try:
                if self.try_acquire():
                    log.info(
                        "leading as %s (lease %s/%s)",
                        self.cfg.identity,
                        self.cfg.namespace,
                        self.cfg.name,
                    )
                    return True
            except ApiError as e:
                log.warning("lease %s: %s", self.cfg.name, e.message)
            if not logged:
                log.info("waiting for leadership (lease %s/%s)", self.cfg.namespace, self.cfg.name)
                logged = True
            stop.wait(self.cfg.retry_every)
        return False

    def keep(self, stop: threading.Event, lost: Callable[[], None]) -> None:
        """Renew until `stop`; call `lost` if the lease could not be kept."""
        last_ok = time.monotonic()
        while not stop.wait(self.cfg.renew_every):
            try:
                if self.try_acquire():
                    last_ok = time.monotonic()
                    continue
                log.error("lease %s taken by another replica", self.cfg.name)
            except ApiError as e:
                log.warning("renewing lease %s failed: %s", self.cfg.name, e.message)
                if time.monotonic() - last_ok < self.cfg.duration - self.cfg.renew_every:
                    continue
            lost()
            return
