"""Orders at the ACME CA, off the pass that wants them: a bounded pool of threads.

A pass asks `Orders.state(secret, names, labels, stored)` for each certificate it
wants. When the Secret's certificate will do (`stored.decide` says keep), nothing is
ordered. Otherwise an order is started in the pool, unless one for that Secret is
under way or the last one failed and its back-off (`stored.backoff`) has not run out:
Let's Encrypt counts failed orders too. A finished order writes the Secret itself
(server-side apply, our labels) and bumps `version`, so the loop passes again soon.

The state returned is what CertificateReady is made of (`certstatus.CertState`): a
certificate that is still valid for the wanted names counts as ready while its
renewal is ordered or waits; otherwise an order under way is Issuing, and a failed
one False with the CertError's reason and message.

The issuer (account key, solver) is made at the first order and kept; a
configuration that cannot work fails each order with ACMENotConfigured.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from ..certstatus import CertState
from ..clients.kube import ApiError, Kube
from ..models.conditions import Reason
from . import stored as st
from .errors import CertError
from .issuer import Issued

log = logging.getLogger(__name__)


class Issuer(Protocol):
    def issue(self, names: tuple[str, ...]) -> Issued: ...


class StoreFailedError(CertError):
    """The certificate came, but its Secret could not be written."""

    reason: str = Reason.APPLY_REJECTED
    retry_seconds: float = 300.0


@dataclass(frozen=True)
class Failure:
    names: tuple[str, ...]
    error: CertError
    attempts: int
    retry_at: float  # time.monotonic()


class Orders:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        make_issuer: Callable[[], Issuer],
        concurrency: int,
        fraction: float,
    ) -> None:
        self.kube, self.namespace, self.fraction = kube, namespace, fraction
        self.make_issuer = make_issuer
        self.pool = ThreadPoolExecutor(concurrency, thread_name_prefix="acme")
        self.lock = threading.Lock()
        self.running: dict[str, tuple[str, ...]] = {}
        self.failures: dict[str, Failure] = {}
        # What the last order of each Secret wrote: a pass that listed the Secret
        # before it was written must not order it again.
        self.fresh: dict[str, st.Stored] = {}
        self.issuer: Issuer | None = None
        self.version = 0  # bumped whenever an order ends

    def state(
        self,
        secret: str,
        names: tuple[str, ...],
        labels: Mapping[str, str],
        stored: st.Stored | None,
    ) -> CertState:
        """What the certificate of `names` in Secret `secret` is; orders one when due."""
        now = dt.datetime.now(dt.UTC)
        stored = self.newest(secret, stored)
        action = st.decide(names, stored, now, self.fraction)
        good = stored is not None and stored.covers(names) and stored.valid(now)
        end = stored.not_after if good and stored is not None else None
        ready = CertState(True, Reason.CERTIFICATE_ISSUED, "", len(names), end)
        with self.lock:
            if action is st.Action.KEEP:
                self.failures.pop(secret, None)
                return ready
            failed = self.failures.get(secret)
            if failed is not None and failed.names != names:
                failed = None  # other names now: a fresh start
            waiting = failed is not None and time.monotonic() < failed.retry_at
            if secret not in self.running and not waiting:
                self.running[secret] = names
                self.pool.submit(self.run, secret, names, dict(labels), failed)
                log.info(
                    "ordering a certificate for %d names (%s) for Secret %s",
                    len(names),
                    action.value,
                    secret,
                )
            elif secret in self.running:
                failed = None
        if good:
            return ready
        if failed is not None and waiting:
            err = failed.error
            return CertState(False, err.reason, err.message, len(names), None)
        return CertState(
            None, Reason.CERTIFICATE_ISSUING, "an order is under way at the CA", len(names), None
        )

    def run(
        self, secret: str, names: tuple[str, ...], labels: dict[str, str], before: Failure | None
    ) -> None:
        """One order, in a thread of the pool: the Secret written, or the failure kept."""
        try:
            issued = self._issuer().issue(names)
            body = st.secret_body(secret, self.namespace, labels, issued)
            try:
                self.kube.apply(body)
            except ApiError as e:
                raise StoreFailedError(
                    f"the certificate came, but its Secret {self.namespace}/{secret} could not "
                    f"be written: {e.message}"
                ) from None
            written = st.read(body)
            if written is not None:
                with self.lock:
                    self.fresh[secret] = written
            log.info(
                "Secret %s holds a certificate for %d names, valid until %s",
                secret,
                len(names),
                issued.not_after.isoformat(),
            )
            failure = None
        except CertError as e:
            failure = self._failed(names, e, before)
            log.warning(
                "no certificate for Secret %s (%s): %s; again in %.0f s",
                secret,
                e.reason,
                e.message,
                failure.retry_at - time.monotonic(),
            )
        except Exception as e:  # a bug or the API server: logged, kept as a failure
            log.exception("ordering the certificate of Secret %s failed", secret)
            failure = self._failed(names, CertError(f"{type(e).__name__}: {e}", 300.0), before)
        with self.lock:
            self.running.pop(secret, None)
            if failure is None:
                self.failures.pop(secret, None)
            else:
                self.failures[secret] = failure
            self.version += 1

    def _failed(self, names: tuple[str, ...], error: CertError, before: Failure | None) -> Failure:
        attempts = (before.attempts if before is not None else 0) + 1
        return Failure(names, error, attempts, time.monotonic() + st.backoff(error, attempts))

    def _issuer(self) -> Issuer:
        with self.lock:
            if self.issuer is None:
                self.issuer = self.make_issuer()
            return self.issuer

    def newest(self, secret: str, listed: st.Stored | None) -> st.Stored | None:
        """The Secret's certificate as listed, or as the last order wrote it if newer."""
        with self.lock:
            fresh = self.fresh.get(secret)
            if fresh is None:
                return listed
            if listed is not None and listed.not_before >= fresh.not_before:
                del self.fresh[secret]  # the listing has caught up
                return listed
            return fresh

    def forget(self, keep: set[str]) -> None:
        """Drop what is known of Secrets no longer wanted."""
        with self.lock:
            for secret in set(self.failures) - keep:
                del self.failures[secret]
            for secret in set(self.fresh) - keep:
                del self.fresh[secret]

    def busy(self, secret: str) -> bool:
        with self.lock:
            return secret in self.running

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
