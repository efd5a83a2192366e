"""Leader election with a coordination.k8s.io Lease: one replica reconciles at a time.

Every replica runs `wait_for_leadership()` until it holds the Lease, then renews
it. A leader that cannot renew before its lease would expire stops reconciling at
once (the process exits and its pod restarts as a candidate), so two replicas
never reconcile together: the others take over only after the lease has expired,
or at once when a leader that stops gracefully gives it back (`release()`).
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


def released(spec: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The lease spec after its holder gives it back: no holder, so anyone may take it."""
    out = {k: v for k, v in spec.items() if k != "holderIdentity"}
    out["leaseDurationSeconds"] = 1
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

    def wait_for_leadership(
        self, stop: threading.Event, beat: Callable[[], None] = lambda: None
    ) -> bool:
        """Block until this replica leads (True) or `stop` is set (False).

        `beat` is called on every attempt: the replica is alive while it waits.
        """
        logged = False
        while not stop.is_set():
            beat()
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

    def release(self) -> bool:
        """Give the lease back, if this replica holds it, so another one leads at once.

        Call it only once this replica has stopped reconciling. Failing is not an
        error: the others then take over when the lease expires.
        """
        path = f"{self.path}/{self.cfg.name}"
        try:
            lease = self.kube.request("GET", path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.cfg.identity:
                return False
            lease["spec"] = released(spec, dt.datetime.now(dt.UTC))
            self.kube.request("PUT", path, body=lease)
        except Exception as e:  # shutting down: whatever failed, the lease just expires
            log.warning("giving back lease %s failed: %s", self.cfg.name, e)
            return False
        log.info("gave back lease %s/%s", self.cfg.namespace, self.cfg.name)
        return True
