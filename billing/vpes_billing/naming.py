"""Names, labels and annotations that link Stripe objects to cluster objects.

Every name is a pure function of a Stripe id, so that a replayed or concurrent
event computes the same objects as the first delivery: the subscription id
decides the namespace, and one namespace holds exactly one server.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "billing.vpes.io"
MANAGED_BY = "vpes-billing"

# Labels: selectable, so either side finds the other with one list call.
LABEL_CUSTOMER = f"{PREFIX}/customer"
LABEL_SUBSCRIPTION = f"{PREFIX}/subscription"
LABEL_CHECKOUT = f"{PREFIX}/checkout"  # a hash: Checkout Session ids are longer than 63
LABEL_TENANT = "vpes.io/tenant"
LABEL_KIND = f"{PREFIX}/kind"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"

# Annotations: the full ids and the billing state of a server.
ANNOTATION_CUSTOMER = f"{PREFIX}/customer-id"
ANNOTATION_SUBSCRIPTION = f"{PREFIX}/subscription-id"
ANNOTATION_CHECKOUT = f"{PREFIX}/checkout-session-id"
ANNOTATION_PRICE = f"{PREFIX}/price-id"
ANNOTATION_STATUS = f"{PREFIX}/subscription-status"
ANNOTATION_PAYMENT_FAILED_AT = f"{PREFIX}/payment-failed-at"
ANNOTATION_CANCELLED_AT = f"{PREFIX}/cancelled-at"
ANNOTATION_SUSPENDED_BY = f"{PREFIX}/suspended-by"
ANNOTATION_FINAL_BACKUP = f"{PREFIX}/final-backup"
ANNOTATION_FINAL_BACKUP_PHASE = f"{PREFIX}/final-backup-phase"

# The chart's admission policy (billing-rbac.yaml) lets billing write only namespaces
# with this prefix and the managed-by label: change both together.
NAMESPACE_PREFIX = "vpes-c-"
SERVER_NAME = "mail"
FIRST_PASSWORD_SECRET = "first-mailbox-password"  # noqa: S105 (a name)
PASSWORD_LINK_SECRET = "password-link"  # noqa: S105 (a name)
TENANT_ROLE_BINDING = "vpes-billing"
QUOTA_NAME = "vpes-plan"
FINAL_BACKUP_NAME = "final"

_STRIPE_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def valid_stripe_id(value: str, prefix: str) -> bool:
    return value.startswith(prefix) and bool(_STRIPE_ID.fullmatch(value))


def digest(value: str, length: int = 40) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:length]


def label_value(stripe_id: str) -> str:
    """The id itself when it is a valid label value, else a stable hash of it."""
    return stripe_id if _LABEL_VALUE.fullmatch(stripe_id) else "h-" + digest(stripe_id, 60)


def namespace_for(subscription_id: str) -> str:
    """The customer's namespace: one per subscription, stable across replays."""
    return NAMESPACE_PREFIX + digest(subscription_id, 16)


def event_record_name(event_id: str) -> str:
    return "stripe-event-" + digest(event_id, 40)


def domain_claim_name(domain: str) -> str:
    return "domain-" + digest(domain, 40)
