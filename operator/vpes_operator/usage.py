"""Every running server's storage, measured in its pod, written to its status.

Every ``usage_interval_seconds`` one pass lists the tenants' Running pods (in
pages: the operator's memory does not grow with the fleet), reads each pod's
usage report (``clients.usage``: one TCP connection to the pod's report port,
which the NetworkPolicy opens to the operator alone; no pods/exec, no kubelet
API) spread evenly over the interval, and writes ``status.usage`` and the
StorageHealthy condition (its transitions become events, its figures the
``vpes_tenant_storage_*`` gauges). Per server and pass: one connection, one
read and one write of the server's status. A pod that does not answer is
tried again on the next pass; after three passes without a figure the
condition says the usage is unknown.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import naming, storage
from .builders.meta import server_reference
from .clients import inventory
from .clients.kube import Kube
from .clients.status import update_server_status
from .clients.usage import read_report
from .conditions import Event, find, set_condition
from .models.conditions import ConditionType
from .models.plan import MailPlanSpec
from .models.server import MailboxUsage, PersonalMailServer, PersonalMailServerStatus, Usage
from .quantity import QuantityError, parse_bytes
from .settings import OperatorSettings

log = logging.getLogger(__name__)
PAGE = "100"
STALE_PASSES = 3
# A pass asks its pods over this share of the interval, at most MAX_GAP s apart.
SPREAD = 0.8
MAX_GAP = 1.0

PlanLookup = Callable[[str], dict[str, Any] | None]
Poster = Callable[[dict[str, Any], list[Event]], None]


def _plan(raw: dict[str, Any] | None) -> MailPlanSpec | None:
    try:
        return MailPlanSpec.model_validate(raw) if raw is not None else None
    except ValidationError:
        return None


def _bytes(text: str | None) -> int | None:
    try:
        return parse_bytes(text) if text else None
    except QuantityError:
        return None


def spec_usage(spec: dict[str, Any], plan_raw: dict[str, Any] | None) -> tuple[Usage, int]:
    """What the spec and its plan say (counts, quotas), and the reserve (0: unknown)."""
    plan = _plan(plan_raw)
    default = plan.default_quota if plan is not None else None
    quotas: dict[str, int | None] = {
        str(m.get("address")): _bytes(m.get("quota") or default)
        for m in spec.get("mailboxes") or []
        if isinstance(m, dict)
    }
    known = {a: q for a, q in quotas.items() if q is not None}
    usage = Usage(
        mailboxes=len(quotas),
        domains=len(spec.get("domains") or []),
        storage_requested=plan.storage if plan is not None else None,
        quota_committed_bytes=sum(known.values()) if len(known) == len(quotas) else None,
        mailbox_usage=[MailboxUsage(address=a, quota_bytes=q) for a, q in sorted(known.items())],
    )
    reserve = 0
    if plan is not None:
        size, message = _bytes(plan.storage), _bytes(plan.max_message_size)
        if size and message:
            reserve = storage.reserve_bytes(size, message)
    return usage, reserve


def limits(settings: OperatorSettings, reserve: int) -> storage.Limits:
    return storage.Limits(
        warning_percent=settings.storage_warning_percent,
        reserve=reserve,
        stale_after=dt.timedelta(seconds=STALE_PASSES * settings.usage_interval_seconds),
    )


def with_measurement(
    current: PersonalMailServer,
    before: PersonalMailServerStatus,
    report: storage.Report,
    plan_raw: dict[str, Any] | None,
    settings: OperatorSettings,
    now: dt.datetime,
) -> PersonalMailServerStatus | None:
    """The status with ``report`` measured in (None: not reconciled yet, leave it)."""
    if find(before.conditions, ConditionType.PROVISIONED) is None:
        return None
    base, reserve = spec_usage(current.spec, plan_raw)
    quotas = {b.address: b.quota_bytes for b in base.mailbox_usage}
    usage = storage.measured(base, report, quotas, now)
    cond = storage.condition(usage, limits(settings, reserve), now=now)
    generation = current.generation
    conditions = set_condition(before.conditions, cond, generation=generation, now=now)
    return before.model_copy(update={"usage": usage, "conditions": conditions})


@dataclass(frozen=True)
class Target:
    namespace: str
    server: str
    address: str  # the pod's IP


@dataclass
class UsagePoll:
    kube: Kube
    settings: OperatorSettings
    plan: PlanLookup
    post: Poster
    namespaces: tuple[str, ...] = ()
    read: Callable[[str], storage.Report] = read_report
    stopping: threading.Event = field(default_factory=threading.Event)

    def targets(self) -> Iterator[Target]:
        """The tenants' running pods, a page at a time."""
        query = {
            "limit": PAGE,
            "labelSelector": f"app.kubernetes.io/name={naming.TENANT_APP}",
            "fieldSelector": "status.phase=Running",
        }
        for path in inventory.namespaced_paths("/api/v1/pods", self.namespaces):
            page_query = dict(query)
            while True:
                page = self.kube.request("GET", path, query=page_query)
                for pod in page.get("items") or []:
                    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
                    server = (meta.get("labels") or {}).get(naming.LABEL_SERVER)
                    if server and status.get("podIP") and not meta.get("deletionTimestamp"):
                        yield Target(meta["namespace"], server, str(status["podIP"]))
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
                page_query = {**query, "continue": token}

    def measure(self, target: Target) -> bool:
        """Read one pod's report and write it; False when the pod gave none."""
        try:
            report = self.read(target.address)
        except (OSError, storage.ReportError) as e:
            log.info("no usage report from %s/%s: %s", target.namespace, target.server, e)
            return False
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)  # as status keeps it
        uid = ""

        def mutate(current: PersonalMailServer) -> PersonalMailServerStatus | None:
            nonlocal uid
            uid = current.metadata.uid
            plan_raw = self.plan(current.plan)
            return with_measurement(current, current.status, report, plan_raw, self.settings, now)

        written = update_server_status(self.kube, target.namespace, target.server, mutate)
        if written.events:
            self.post(server_reference(target.server, target.namespace, uid), written.events)
        return True

    def run(self) -> tuple[int, int]:
        """One pass: (servers measured, pods that gave no report).

        The pods are asked evenly over most of the interval, not all at once:
        the API server sees a steady trickle of status writes (at 1,000
        servers and 300 s, about 4 a second), never a burst of a thousand.
        """
        targets = list(self.targets())
        spread = SPREAD * self.settings.usage_interval_seconds
        gap = min(MAX_GAP, spread / max(1, len(targets)))
        futures = []
        with ThreadPoolExecutor(self.settings.usage_concurrency, "usage") as pool:
            for target in targets:
                if self.stopping.is_set():
                    break
                futures.append(pool.submit(self._safe_measure, target))
                self.stopping.wait(gap)
        results = [f.result() for f in futures]
        return sum(results), len(results) - sum(results)

    def _safe_measure(self, target: Target) -> bool:
        try:
            return self.measure(target)
        except Exception:
            log.exception("writing the usage of %s/%s failed", target.namespace, target.server)
            return False
