"""Names, labels and annotations that link Stripe objects to cluster objects.

Every name is a pure function of a Stripe id, so that a replayed or concurrent
event computes the same objects as the first delivery: the subscription id
decides the namespace, and one namespace holds exactly one server.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TypeGuard

PREFIX = "billing.vpes.io"
MANAGED_BY = "vpes-billing"

# Labels: selectable, so either side finds the other with one list call.
LABEL_CUSTOMER = f"{PREFIX}/customer"
LABEL_SUBSCRIPTION = f"{PREFIX}/subscription"
# The SHA-256 (60 hex digits) of the signup's secret key: see signup_key below.
LABEL_SIGNUP_KEY = f"{PREFIX}/signup-key-sha256"
LABEL_TENANT = "vpes.io/tenant"
LABEL_KIND = f"{PREFIX}/kind"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"

# Annotations: the full ids and the billing state of a server.
ANNOTATION_CUSTOMER = f"{PREFIX}/customer-id"
ANNOTATION_SUBSCRIPTION = f"{PREFIX}/subscription-id"
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

# What earlier versions wrote: the Checkout Session id in plain (annotation) and its
# hash (label). Knowing the id let anyone find the server and act as its customer;
# billing removes both from the objects it manages (service._sync).
LEGACY_ANNOTATION_CHECKOUT = f"{PREFIX}/checkout-session-id"
LEGACY_LABEL_CHECKOUT = f"{PREFIX}/checkout"

# The Checkout Session's metadata entry that carries the signup key's hash to the webhook.
METADATA_SIGNUP_KEY = "signup_key_sha256"
SIGNUP_KEY = re.compile(r"^[A-Za-z0-9_-]{43}$")
_KEY_DIGEST = re.compile(r"^[0-9a-f]{60}$")

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


def new_signup_key() -> str:
    """The secret of one signup: only the browser that signed up gets it (in the return
    URL Stripe sends it back to); it shows the server's state and asks for the password
    link. The cluster and Stripe's metadata keep only `signup_key_digest` of it, and the
    Checkout Session id, which Stripe events and other readers see, proves nothing."""
    return secrets.token_urlsafe(32)


def signup_key_digest(key: str) -> str:
    """What is stored of a signup key: its SHA-256, 60 hex digits (a label value)."""
    return digest(key, 60)


def valid_signup_key_digest(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(_KEY_DIGEST.fullmatch(value))
