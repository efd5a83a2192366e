"""Stripe events → cluster resources, exactly once.

Each event only says *which* subscription to look at. What to do is decided
from the subscription as Stripe reports it now (lifecycle.decide), so that a
replayed, late or reordered event converges on the same state as the newest.
`checkout.session.completed` additionally carries what the customer chose
(domain, first mailbox, email): it is the only event that creates a server.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from vpes_operator.clients.kube import ApiError, Kube
from vpes_operator.models.backup import RequestPhase
from vpes_operator.models.common import DOMAIN_PATTERN, MAILBOX_ADDRESS_PATTERN

from . import naming as n
from . import tenant
from .builders import Signup
from .ledger import Ledger, Record
from .lifecycle import Removal, decide, parse_stamp, removal, stamp
from .settings import Settings
from .stripe_gateway import StripeGateway, StripeUnavailableError, SubscriptionMissingError

log = logging.getLogger("vpes.billing")
JSON = dict[str, Any]

SUBSCRIPTION_EVENTS = {
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
}
INVOICE_EVENTS = {"invoice.paid", "invoice.payment_failed", "invoice.payment_succeeded"}
# A Checkout paid by a delayed method (bank debit): the subscription's state changes.
CHECKOUT_SYNC_EVENTS = {
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
}


class RefusedError(Exception):
    """The event is valid but cannot be fulfilled; the message is for the customer."""


class UnfulfillableError(Exception):
    """The event cannot be acted on now (bad data, unknown price): logged and counted,
    recorded as failed but not as processed, and answered with an error status so that
    Stripe delivers it again (for three days), e.g. after the provider adds the MailPlan."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Outcome:
    outcome: str  # done, duplicate, ignored, refused, failed
    message: str = ""

    @property
    def retry(self) -> bool:
        """Stripe must deliver the event again: answered with an error status."""
        return self.outcome == "failed"


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "vpes_billing_events",
            "Stripe webhook events by type and outcome.",
            ["type", "outcome"],
            registry=registry,
        )
        self.errors = Counter(
            "vpes_billing_errors",
            "Events that could not be fulfilled, by reason.",
            ["reason"],
            registry=registry,
        )
        self.rejected = Counter(
            "vpes_billing_webhook_rejected",
            "Webhook requests refused before processing (signature, size).",
            ["reason"],
            registry=registry,
        )
        self.removals = Counter(
            "vpes_billing_removals",
            "Customer namespaces removed after the retention period, by the phase of the "
            "final backup then (anything but Completed: billing gave up waiting).",
            ["final_backup"],
            registry=registry,
        )
        self.seconds = Histogram(
            "vpes_billing_event_seconds",
            "Time to process one event.",
            registry=registry,
        )


def _obj(event: JSON) -> JSON:
    data = event.get("data") or {}
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def _id(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def signup_key(session: JSON) -> str | None:
    """The hash of the signup's key, from the Checkout Session's metadata (set by our
    signup form; None for a session made elsewhere). The session id is not used: Stripe's
    events, its dashboard and earlier versions' annotations show it to others."""
    meta = session.get("metadata") or {}
    value = meta.get(n.METADATA_SIGNUP_KEY) if isinstance(meta, dict) else None
    return value if n.valid_signup_key_digest(value) else None


def invoice_subscription(invoice: JSON) -> str | None:
    """The subscription of an invoice, in the old (`subscription`) and the new
    (`parent.subscription_details.subscription`) API shapes."""
    sub = _id(invoice.get("subscription"))
    if sub:
        return sub
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {} if isinstance(parent, dict) else {}
    return _id(details.get("subscription")) if isinstance(details, dict) else None


class BillingService:
    def __init__(
        self,
        settings: Settings,
        kube: Kube,
        stripe: StripeGateway,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.stripe = stripe
        self.ledger = Ledger(kube, settings.namespace)
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)

    # -- events ---------------------------------------------------------------

    def handle(self, event: JSON) -> Outcome:
        """Process one verified event. Raises on temporary trouble (Stripe retries)."""
        event_id = str(event.get("id") or "")
        etype = str(event.get("type") or "")
        if not n.valid_stripe_id(event_id, "evt_"):
            self.metrics.events.labels(etype, "failed").inc()
            return Outcome("failed", "event without a valid id")
        if self.ledger.seen(event_id):
            self.metrics.events.labels(etype, "duplicate").inc()
            log.info("event %s (%s) already processed", event_id, etype)
            return Outcome("duplicate")
        started = time.monotonic()
        key: str | None = None
        try:
            if etype == "checkout.session.completed":
                key = signup_key(_obj(event))
                result = self._checkout_completed(_obj(event))
            elif etype in SUBSCRIPTION_EVENTS:
                result = self._sync(_id(_obj(event).get("id")))
            elif etype in INVOICE_EVENTS:
                result = self._sync(invoice_subscription(_obj(event)))
            elif etype in CHECKOUT_SYNC_EVENTS:
                result = self._sync(_id(_obj(event).get("subscription")))
            else:
                result = Outcome("ignored", f"{etype} is not used")
        except RefusedError as e:
            result = Outcome("refused", str(e))
            log.warning("event %s (%s) refused: %s", event_id, etype, e)
        except UnfulfillableError as e:
            result = Outcome("failed", str(e))
            self.metrics.errors.labels(e.reason).inc()
            log.error(
                "event %s (%s) cannot be fulfilled now, Stripe will retry: %s", event_id, etype, e
            )
        self.ledger.record(Record(event_id, etype, result.outcome, result.message, key))
        self.metrics.events.labels(etype, result.outcome).inc()
        self.metrics.seconds.observe(time.monotonic() - started)
        log.info("event %s (%s): %s %s", event_id, etype, result.outcome, result.message)
        return result

    def _checkout_completed(self, session: JSON) -> Outcome:
        if session.get("mode") != "subscription":
            return Outcome("ignored", "not a subscription checkout")
        sub_id = _id(session.get("subscription"))
        customer = _id(session.get("customer"))
        if not sub_id or not customer:
            raise UnfulfillableError(
                "incomplete-session", "the session has no subscription or customer"
            )
        meta = session.get("metadata") or {}
        details = session.get("customer_details") or {}
        email = str(details.get("email") or session.get("customer_email") or "")
        domain = str(meta.get("domain") or "")
        mailbox = str(meta.get("mailbox") or "")
        if not re.fullmatch(DOMAIN_PATTERN, domain) or not re.fullmatch(
            MAILBOX_ADDRESS_PATTERN, f"{mailbox}@{domain}"
        ):
            raise UnfulfillableError(
                "bad-metadata", "the session does not name a valid domain and mailbox"
            )
        sub = self._subscription(sub_id)
        plans = tenant.plans_by_price(self.kube)
        plan = plans.get(sub.price_id or "")
        if plan is None:
            raise UnfulfillableError(
                "unknown-price", f"no MailPlan has stripePriceId {sub.price_id!r}"
            )
        signup = Signup(
            customer=customer,
            subscription=sub_id,
            email=email,
            domain=domain,
            mailbox=mailbox,
            signup_key=signup_key(session),
        )
        try:
            tenant.claim_domain(self.kube, self.settings, domain, sub_id)
        except tenant.DomainTakenError as e:
            raise RefusedError(str(e)) from e
        first = decide(
            sub,
            {},
            time.time(),
            grace_seconds=self.settings.grace_seconds,
            retention_seconds=self.settings.retention_seconds,
        )
        tenant.provision(self.kube, self.settings, signup, plan, suspended=first.suspended)
        return self._sync(sub_id)

    def _subscription(self, sub_id: str) -> Any:
        try:
            return self.stripe.subscription(sub_id)
        except SubscriptionMissingError as e:
            raise UnfulfillableError(
                "unknown-subscription", f"Stripe has no subscription {sub_id}"
            ) from e

    def _sync(self, sub_id: str | None) -> Outcome:
        """Make the subscription's server match what Stripe says now."""
        if not sub_id or not n.valid_stripe_id(sub_id, "sub_"):
            return Outcome("ignored", "no subscription")
        server = tenant.server_of(self.kube, sub_id)
        if server is None:
            return Outcome("ignored", f"no server for {sub_id} (yet)")
        if tenant.forget_checkout_session(self.kube, server):
            log.info("subscription %s: removed the session id earlier versions kept", sub_id)
        sub = self._subscription(sub_id)
        marks = dict(server["metadata"].get("annotations") or {})
        desired = decide(
            sub,
            marks,
            time.time(),
            grace_seconds=self.settings.grace_seconds,
            retention_seconds=self.settings.retention_seconds,
        )
        plan_name: str | None = None
        missing_price: str | None = None
        if sub.price_id:
            plan = tenant.plans_by_price(self.kube).get(sub.price_id)
            if plan is None:
                missing_price = sub.price_id
            else:
                plan_name = plan.name
                if plan.name != server["spec"].get("plan"):
                    tenant.apply_quota(self.kube, server["metadata"]["namespace"], plan)
        notes = dict(desired.annotations)
        for key in (n.ANNOTATION_FINAL_BACKUP, n.ANNOTATION_FINAL_BACKUP_PHASE):
            if marks.get(key):
                notes[key] = marks[key]
        if desired.final_backup:
            namespace = server["metadata"]["namespace"]
            if tenant.namespace_terminating(self.kube, namespace):
                return Outcome("done", f"{sub_id}: namespace {namespace} is being removed")
            phase = self._final_backup(server, sub_id, marks, notes)
            if desired.delete:
                removed = self._remove(server, sub_id, phase, notes)
                if removed is not None:
                    return removed
        tenant.apply_billing_state(self.kube, server, plan_name, desired.suspended, notes)
        if missing_price:
            # The rest is done; the plan follows when Stripe delivers the event again.
            raise UnfulfillableError(
                "unknown-price",
                f"subscription {sub_id}: no MailPlan has stripePriceId {missing_price!r}; "
                f"plan {server['spec'].get('plan')} kept",
            )
        return Outcome(
            "done",
            f"{sub_id}: {sub.status}, plan {plan_name or server['spec'].get('plan')}, "
            f"suspended={desired.suspended}",
        )

    def _final_backup(
        self, server: JSON, sub_id: str, marks: dict[str, str], notes: dict[str, str]
    ) -> str | None:
        """Request the final backup (once) and return its phase; `notes` record both."""
        if tenant.request_final_backup(self.kube, server):
            notes[n.ANNOTATION_FINAL_BACKUP] = stamp(time.time())
            return None
        phase = tenant.final_backup_phase(self.kube, server)
        if phase:
            notes[n.ANNOTATION_FINAL_BACKUP_PHASE] = phase
        if phase == RequestPhase.FAILED and marks.get(n.ANNOTATION_FINAL_BACKUP_PHASE) != phase:
            self.metrics.errors.labels("final-backup-failed").inc()
            log.error(
                "subscription %s: the final backup of %s/%s failed; its namespace is kept "
                "(at most %.0fs past the retention period) until a final backup completes",
                sub_id,
                server["metadata"]["namespace"],
                server["metadata"]["name"],
                self.settings.final_backup_wait_seconds,
            )
        return phase

    def _remove(
        self, server: JSON, sub_id: str, phase: str | None, notes: dict[str, str]
    ) -> Outcome | None:
        """Remove the namespace if the final backup allows it; None: not yet."""
        namespace = server["metadata"]["namespace"]
        cancelled = parse_stamp(notes.get(n.ANNOTATION_CANCELLED_AT)) or time.time()
        overdue = time.time() - cancelled - self.settings.retention_seconds
        verdict = removal(phase, overdue, self.settings.final_backup_wait_seconds)
        if verdict is Removal.WAIT:
            log.info(
                "subscription %s: retention over; namespace %s kept until its final backup "
                "completes (now %s)",
                sub_id,
                namespace,
                phase or "not started",
            )
            return None
        if verdict is Removal.GIVE_UP:
            self.metrics.errors.labels("final-backup-gave-up").inc()
            log.error(
                "subscription %s: gave up waiting for the final backup (%s) %.0fs after the "
                "retention period; removing namespace %s WITHOUT a completed final backup",
                sub_id,
                phase or "not started",
                overdue,
                namespace,
            )
        tenant.remove(self.kube, self.settings, server)
        self.metrics.removals.labels(phase or "None").inc()
        return Outcome("done", f"{sub_id}: removed after the retention period")

    # -- periodic -------------------------------------------------------------

    def sweep(self) -> int:
        """Revisit servers waiting on a grace or retention period; drop old event records."""
        visited = 0
        selector = f"{n.LABEL_MANAGED_BY}={n.MANAGED_BY}"
        for server in tenant.servers_by_label(self.kube, selector):
            marks = server["metadata"].get("annotations") or {}
            if not (
                marks.get(n.ANNOTATION_PAYMENT_FAILED_AT) or marks.get(n.ANNOTATION_CANCELLED_AT)
            ):
                continue
            sub_id = marks.get(n.ANNOTATION_SUBSCRIPTION)
            try:
                self._sync(sub_id)
                visited += 1
            except (ApiError, StripeUnavailableError, UnfulfillableError) as e:
                log.warning("sweep: subscription %s: %s", sub_id, e)
        self.ledger.sweep(self.settings.event_record_days * 86400)
        return visited
