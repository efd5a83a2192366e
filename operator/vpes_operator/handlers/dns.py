"""DNS handlers on PersonalMailServers: publish and verify; re-check on a timer; clean up.

A kopf timer ticks for every server; a check runs only when its back-off
(`dns.schedule`) says it is due. A DNS fault is a condition, never a crash loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from .. import GROUP, VERSION, health, mailhost, metrics, naming
from ..conditions import Event
from ..dns import service
from ..dns.schedule import CHECK_ANNOTATION, Schedule
from ..models.server import PersonalMailServer
from ..settings import OperatorSettings
from .events import post
from .server import plan_spec

PLURAL = "personalmailservers"
# The tick is read once, at import: kopf fixes a timer's interval when it registers it.
TICK = OperatorSettings.from_env().dns_verify_tick
# Attempts to remove a deleted server's records (back-off 5 s doubling to 5 min).
ATTEMPTS = OperatorSettings.from_env().dns_cleanup_attempts
log = logging.getLogger(__name__)


SCHEDULE = Schedule()


def _run(server: PersonalMailServer, memo: Any) -> service.Outcome:
    meta = server.metadata
    token = meta.annotations.get(CHECK_ANNOTATION)
    plan = meta.annotations.get(naming.ANNOTATION_PLAN_REVISION)
    with SCHEDULE.run_lock(meta.uid):
        if SCHEDULE.gone(meta.uid) or meta.deletion_timestamp:
            return service.Outcome()
        plan_json = plan_spec(memo.kube, server.plan)
        calendar = service.sells_calendar(plan_json)
        dedicated = mailhost.sells_dedicated(plan_json)
        outcome = service.run(
            memo.kube, memo.settings, server, calendar=calendar, dedicated=dedicated
        )
    if outcome.failures:
        metrics.DNS_VERIFICATION_FAILURES.labels(meta.namespace, meta.name).inc(outcome.failures)
    SCHEDULE.done(
        meta.uid,
        server.generation,
        outcome.verified,
        memo.settings,
        time.monotonic(),
        soon=outcome.waiting is not None,
        token=token,
        plan=plan,
    )
    return outcome


# Publishing and checking run from the timer alone, not as create/update
# handlers: the server's own reconcile is then the only handler of those
# causes, and an operator killed between two handlers of one cause cannot leave
# the reconcile (which also refreshes readiness) undone after a restart. The
# first tick comes at once for a new server (and for every server at start-up);
# a spec change is noticed by its generation at the next tick, a new value of
# the vpes.io/check-dns annotation (the panel's "Check again") likewise, and so is
# a change of the server's plan (handlers/plan.py sets its plan-revision
# annotation): calendar and contacts on or off add or withdraw their SRV records.
@kopf.timer(GROUP, VERSION, PLURAL, id="dns", interval=TICK)
async def dns_timer(
    body: kopf.Body, meta: kopf.Meta, memo: Any, logger: kopf.Logger, **_: Any
) -> None:
    uid = str(meta.get("uid"))
    generation = int(meta.get("generation", 1))
    annotations = meta.get("annotations") or {}
    token = annotations.get(CHECK_ANNOTATION)
    plan = annotations.get(naming.ANNOTATION_PLAN_REVISION)
    if not SCHEDULE.is_due(uid, generation, time.monotonic(), token, plan):
        return  # the common case: no thread, no API call
    try:
        server = PersonalMailServer.model_validate(dict(body))
        outcome = await asyncio.to_thread(_run, server, memo)
    except Exception:  # a check never crashes the operator; it is retried with back-off
        logger.exception("DNS of %s failed", meta.get("name"))
        now = time.monotonic()
        SCHEDULE.done(uid, generation, False, memo.settings, now, token=token, plan=plan)
        return
    post(body, outcome.events)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="dns-cleanup", retries=ATTEMPTS)
@health.tracks
def dns_cleanup(
    body: kopf.Body, meta: kopf.Meta, memo: Any, retry: int, logger: kopf.Logger, **_: Any
) -> None:
    """Remove the records the server published (its finalizer holds the deletion until then).

    After the last attempt the deletion goes on (nothing stays Terminating
    forever) and what was left in DNS is reported: an event, the log, a metric.
    """
    uid = str(meta.get("uid"))
    SCHEDULE.forget(uid)
    # The server's series goes with it: a deleted tenant is not a failing one.
    metrics.DNS_VERIFICATION_FAILURES.remove(str(meta.get("namespace")), str(meta.get("name")))
    final = retry >= ATTEMPTS - 1
    with SCHEDULE.run_lock(uid):  # a publish still running finishes first
        server = PersonalMailServer.model_validate(dict(body))
        problems = service.cleanup(memo.kube, memo.settings, server, final=final)
    if not problems:
        return
    text = "; ".join(p.message for p in problems)
    if final:
        report_left(f"{meta.get('namespace')}/{meta.get('name')}", text, len(problems))
        post(body, [Event("Warning", "DNSCleanupFailed", f"records left in DNS: {text}")])
        return
    raise kopf.TemporaryError(f"DNS records not removed yet: {text}", delay=min(5 * 2**retry, 300))


def report_left(server: str, text: str, count: int) -> None:
    log.error("gave up removing the DNS records of %s; left in DNS: %s", server, text)
    metrics.DNS_RECORDS_LEFT.inc(count)
